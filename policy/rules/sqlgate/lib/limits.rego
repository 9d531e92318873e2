# METADATA
# description: |
#   Per-group and per-role parameter limits
#   (data.sqlgate.config.routes[subject].limits): numeric bounds on a route's
#   parameters for callers whose access comes from a group or a role, e.g. an
#   amount ceiling for sales. Each limit names either a group or a role
#   (lint refuses both and neither). An absent (optional) parameter is not
#   checked; one that is present but not a number breaks every limit, since
#   ordering across types would otherwise let "5000" pass a ceiling of 1000.
#
#   The messages name the parameter and the bound, never the parameter's
#   value: reasons are stored verbatim in the signed audit log, where the
#   route's redact_params does not reach them.
package sqlgate.lib.limits

# broken(route, kind, name) is true when the call's parameters break a limit
# of group name (kind "group") or role name (kind "role") on route. It is the
# fast check on the decision path; violations explains it (the tests hold the
# two in agreement).
broken(route, kind, name) if {
	some limit in route.limits
	limit[kind] == name
	value := input.params[limit.param]
	not _within(limit, value)
}

_within(limit, value) if {
	is_number(value)
	value <= object.get(limit, "max", value)
	value >= object.get(limit, "min", value)
}

# violations(route, kind, name) is the set of messages for the limits of group
# or role name on route that the call's parameters break: "amount exceeds the
# sales limit of 1000", without the value.
violations(route, kind, name) := {msg |
	some limit in route.limits
	limit[kind] == name
	msg := _violation(limit, name, input.params[limit.param])
}

_violation(limit, name, value) := sprintf("%s must be a number", [limit.param]) if {
	not is_number(value)
} else := sprintf("%s exceeds the %s limit of %v", [limit.param, name, limit.max]) if {
	value > limit.max
} else := sprintf("%s is below the %s minimum of %v", [limit.param, name, limit.min]) if {
	value < limit.min
}
