# METADATA
# description: |
#   Per-group parameter limits (data.sqlgate.config.limits): numeric ceilings
#   and floors on a route's parameters for callers whose access comes from a
#   group, e.g. an amount ceiling for sales.
package sqlgate.lib.limits

import data.sqlgate.config

# violations(group) is the set of messages for the limits of group on the
# requested route that the call's parameters break. Empty means they hold.
violations(group) := {msg |
	some broken in _broken
	broken[0] == group
	msg := broken[1]
}

# _broken holds [group, message] for every limit on the requested route that
# the call breaks. An absent (optional) parameter is not checked.
#
# A parameter that is present but not a number breaks every numeric limit:
# ordering across types would otherwise let "5000" pass a ceiling of 1000.
_broken contains [limit.group, msg] if {
	some limit in _route_limits
	value := input.params[limit.param]
	not is_number(value)
	msg := sprintf("%s must be a number", [limit.param])
}

# A bound that is set but not a number would compare as larger than every
# number and silently allow everything.
_broken contains [limit.group, msg] if {
	some limit in _route_limits
	some bound in ["max", "min"]
	bound in object.keys(limit)
	not is_number(limit[bound])
	msg := sprintf("the %s limit on %s is misconfigured", [limit.group, limit.param])
}

_broken contains [limit.group, msg] if {
	some limit in _route_limits
	value := input.params[limit.param]
	is_number(value)
	value > limit.max
	msg := sprintf("%s %v exceeds the %s limit of %v", [limit.param, value, limit.group, limit.max])
}

_broken contains [limit.group, msg] if {
	some limit in _route_limits
	value := input.params[limit.param]
	is_number(value)
	value < limit.min
	msg := sprintf("%s %v is below the %s minimum of %v", [limit.param, value, limit.group, limit.min])
}

_route_limits contains limit if {
	some limit in config.limits
	limit.route == input.route.subject
}
