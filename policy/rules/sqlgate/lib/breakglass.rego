# METADATA
# description: |
#   Break-glass access (data.sqlgate.config.break_glass): members of the
#   break-glass group may call routes with break_glass: true outside their
#   grants, limits and business hours, but only with a written reason in the
#   Sqlgate-Reason header (input.request.reason).
package sqlgate.lib.breakglass

import data.sqlgate.config

# member is true when the principal belongs to the break-glass group.
member if config.break_glass.group in input.principal.groups

# eligible(route) is true when a member calls route and route allows break-glass.
eligible(route) if {
	route.break_glass == true
	member
}

# allowed(route) is true when an eligible call carries a long enough reason.
allowed(route) if {
	eligible(route)
	count(reason) >= config.break_glass.min_reason_length
}

# reason is the caller's trimmed justification ("" when absent).
reason := trim_space(object.get(input, ["request", "reason"], ""))

# violations(route) explains why an eligible break-glass call was refused.
violations(route) := {msg |
	eligible(route)
	not allowed(route)
	msg := sprintf(
		"break-glass access to %s requires a reason of at least %v characters (Sqlgate-Reason header)",
		[input.route.subject, config.break_glass.min_reason_length],
	)
}
