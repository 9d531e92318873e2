# METADATA
# title: SQL credential decisions
# description: |
#   data.sqlgate.sql_credentials decides a short-lived SQL login for
#   input.principal: role input.credential.role on database
#   input.credential.database, for at most the granted TTL. A deny-list
#   entry without routes that matches the principal refuses every SQL login
#   (issue and renew); entries with routes restrict only those routes.
package sqlgate.sql_credentials

import data.sqlgate.config
import data.sqlgate.lib.denylist
import data.sqlgate.lib.request

default allow := false

allow if {
	count(_grants) > 0
	not denylist.excluded
}

reasons contains msg if {
	some msg in denylist.exclusions
}

reasons contains msg if {
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
