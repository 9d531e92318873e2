# METADATA
# title: SQL credential decisions
# description: |
#   data.sqlgate.sql_credentials decides a short-lived SQL login for
#   input.principal: role input.credential.role on database
#   input.credential.database, for at most the granted TTL. A deny-list
#   entry without routes that matches the principal refuses every SQL login
#   (issue and renew); entries with routes restrict only those routes.
#
#   deny refuses whatever allow says: the engine denies a login for which it
#   holds any message, with its messages as the reasons, so an allow rule
#   added to this package cannot let a deny-listed principal through.
package sqlgate.sql_credentials

import data.sqlgate.config
import data.sqlgate.lib.denylist
import data.sqlgate.lib.request

default allow := false

allow if {
	count(_grants) > 0
	count(deny) == 0
}

deny contains msg if {
	denylist.excluded
	some msg in denylist.exclusions
}

reasons contains msg if {
	some msg in deny
}

# A login allowed by another rule (one a policy adds) is not explained as
# refused.
reasons contains msg if {
	not allow
	count(_grants) == 0
	msg := sprintf(
		"role %s on database %s is not granted to any of your groups (%s)",
		[input.credential.role, input.credential.database, request.groups_text],
	)
}

# ttl is the longest lifetime (seconds) a lease may reach, renewals
# included: the longest granted max_ttl. The broker issues the requested
# (or default) lifetime within it and lets renewals extend up to it.
ttl := _max_ttl

_grants contains grant if {
	some grant in config.sql_credentials
	grant.group in input.principal.groups
	grant.database == input.credential.database
	input.credential.role in grant.roles
}

_max_ttl := max({seconds |
	some grant in _grants
	seconds := time.parse_duration_ns(grant.max_ttl) / 1000000000
})
