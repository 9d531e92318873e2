# METADATA
# description: Facts about the current request shared by the library modules.
package sqlgate.lib.request

# now_ns is the request time (input.request.time_ns), so that business-hours
# and sign-in-age rules replay deterministically; without a request time it is
# the evaluation time.
now_ns := input.request.time_ns if {
	input.request.time_ns > 0
} else := time.now_ns()

# who names the principal in messages: the e-mail when known, else the subject.
who := input.principal.email if {
	input.principal.email != ""
} else := input.principal.subject

# groups_text lists the principal's groups for messages.
groups_text := concat(", ", input.principal.groups) if {
	count(input.principal.groups) > 0
} else := "none"

# grantees_text names the principal's groups, and its roles when it has any,
# for messages: "groups (sales)", "groups (none) or roles (orders.writer)".
grantees_text := sprintf("groups (%s) or roles (%s)", [groups_text, concat(", ", input.principal.roles)]) if {
	count(input.principal.roles) > 0
} else := sprintf("groups (%s)", [groups_text])
