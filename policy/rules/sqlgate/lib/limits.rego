# METADATA
# description: |
#   Per-group parameter limits (data.sqlgate.config.routes[subject].limits):
#   numeric bounds on a route's parameters for callers whose access comes from
#   a group, e.g. an amount ceiling for sales. An absent (optional) parameter
#   is not checked; one that is present but not a number breaks every limit,
#   since ordering across types would otherwise let "5000" pass a ceiling of
#   1000.
package sqlgate.lib.limits

# broken(route, group) is true when the call's parameters break a limit of
# group on route. It is the fast check on the decision path; violations
# explains it (the tests hold the two in agreement).
broken(route, group) if {
	some limit in route.limits
	limit.group == group
	value := input.params[limit.param]
	not _within(limit, value)
}

_within(limit, value) if {
	is_number(value)
	value <= object.get(limit, "max", value)
	value >= object.get(limit, "min", value)
}

# violations(route, group) is the set of messages for the limits of group on
# route that the call's parameters break.
violations(route, group) := {msg |
	some limit in route.limits
	limit.group == group
	msg := _violation(limit, input.params[limit.param])
}

_violation(limit, value) := sprintf("%s must be a number", [limit.param]) if {
	not is_number(value)
} else := sprintf("%s %v exceeds the %s limit of %v", [limit.param, value, limit.group, limit.max]) if {
	value > limit.max
} else := sprintf("%s %v is below the %s minimum of %v", [limit.param, value, limit.group, limit.min]) if {
	value < limit.min
}
