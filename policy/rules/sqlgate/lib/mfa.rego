# METADATA
# description: |
#   MFA-required routes (data.sqlgate.config.mfa): listed routes need a token
#   with multi-factor evidence and, with max_auth_age, a recent sign-in.
package sqlgate.lib.mfa

import data.sqlgate.config
import data.sqlgate.lib.request

# violations is non-empty when the requested route requires MFA (or a recent
# sign-in) that the principal's token does not show.
violations contains msg if {
	input.route.subject in config.mfa.routes
	not input.principal.mfa == true
	msg := sprintf("%s requires multi-factor authentication: sign in again with MFA", [input.route.subject])
}

violations contains msg if {
	input.route.subject in config.mfa.routes
	"max_auth_age" in object.keys(config.mfa)
	not _recent
	msg := sprintf("%s requires a sign-in within the last %v: sign in again", [input.route.subject, config.mfa.max_auth_age])
}

# A malformed max_auth_age never counts as recent.
_recent if {
	max_age_ns := time.parse_duration_ns(config.mfa.max_auth_age)
	input.principal.auth_time > 0
	request.now_ns - (input.principal.auth_time * 1000000000) <= max_age_ns
}
