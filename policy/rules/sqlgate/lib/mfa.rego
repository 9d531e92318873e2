# METADATA
# description: |
#   MFA-required routes: routes with mfa: true need a token with multi-factor
#   evidence; routes with max_auth_age need a recent interactive sign-in.
package sqlgate.lib.mfa

import data.sqlgate.lib.request

# missing(route) is true when route requires MFA or a recent sign-in that the
# principal's token does not show. It is the fast check on the decision path;
# violations explains it (the tests hold the two in agreement).
missing(route) if {
	route.mfa == true
	not input.principal.mfa == true
}

missing(route) if {
	max_age := route.max_auth_age
	not _signed_in_within(max_age)
}

# violations(route) explains missing(route).
violations(route) := {msg |
	route.mfa == true
	not input.principal.mfa == true
	msg := sprintf("%s requires multi-factor authentication: sign in again with MFA", [input.route.subject])
} | {msg |
	max_age := route.max_auth_age
	not _signed_in_within(max_age)
	msg := sprintf("%s requires a sign-in within the last %s: sign in again", [input.route.subject, max_age])
}

# A malformed max_auth_age (which lint refuses at load) never counts as recent.
_signed_in_within(max_age) if {
	input.principal.auth_time > 0
	request.now_ns - (input.principal.auth_time * 1000000000) <= time.parse_duration_ns(max_age)
}
