# METADATA
# description: |
#   Break-glass access (data.sqlgate.config.break_glass): members of the
#   break-glass group may call the listed routes outside their grants, limits
#   and business hours, but only with a written reason in the Sqlgate-Reason
#   header (input.request.reason).
package sqlgate.lib.breakglass

import data.sqlgate.config

# member is true when the principal belongs to the break-glass group.
member if {
	config.break_glass.group in input.principal.groups
}

# eligible is true when a member calls a break-glass route.
eligible if {
	member
	input.route.subject in config.break_glass.routes
}

# allowed is true when an eligible call carries a long enough reason.
allowed if {
	eligible
	count(reason) >= _min_reason_length
}

# reason is the caller's trimmed justification ("" when absent).
reason := trim_space(object.get(input, ["request", "reason"], ""))

# violations explains why an eligible break-glass call was refused.
violations contains msg if {
	eligible
	not allowed
	msg := sprintf(
		"break-glass access to %s requires a reason of at least %v characters (Sqlgate-Reason header)",
		[input.route.subject, _min_reason_length],
	)
}

_min_reason_length := object.get(config.break_glass, "min_reason_length", 10)
