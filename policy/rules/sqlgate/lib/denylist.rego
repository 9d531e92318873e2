# METADATA
# description: |
#   Deny lists (data.sqlgate.config.deny): entries that refuse principals or
#   groups some or all routes, whatever else allows them.
package sqlgate.lib.denylist

import data.sqlgate.config

# denied(subject) is true when an entry matches the principal and route subject.
denied(subject) if {
	some entry in config.deny
	_principal_matches(entry)
	_route_matches(entry, subject)
}

# violations(subject) holds the reasons of the entries that match the
# principal and route subject.
violations(subject) := {object.get(entry, "reason", "denied by the deny list") |
	some entry in config.deny
	_principal_matches(entry)
	_route_matches(entry, subject)
}

# An entry without principals and groups matches every principal.
_principal_matches(entry) if {
	not "principals" in object.keys(entry)
	not "groups" in object.keys(entry)
}

_principal_matches(entry) if {
	input.principal.subject in entry.principals
}

# E-mail addresses match case-insensitively.
_principal_matches(entry) if {
	input.principal.email != ""
	some p in entry.principals
	lower(p) == lower(input.principal.email)
}

_principal_matches(entry) if {
	some group in entry.groups
	group in input.principal.groups
}

# An entry without routes matches every route.
_route_matches(entry, _) if {
	not "routes" in object.keys(entry)
}

_route_matches(entry, subject) if {
	subject in entry.routes
}
