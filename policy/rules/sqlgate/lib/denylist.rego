# METADATA
# description: |
#   Deny lists (data.sqlgate.config.deny): entries that refuse principals or
#   groups some or all routes, whatever else allows them.
package sqlgate.lib.denylist

import data.sqlgate.config

# violations holds the reasons of the entries that match the principal and the
# requested route.
violations := route_violations(input.route.subject)

# route_violations(route) holds the reasons of the entries that match the
# principal and route.
route_violations(route) := {reason |
	some entry in config.deny
	_principal_matches(entry)
	_route_matches(entry, route)
	reason := object.get(entry, "reason", "denied by the deny list")
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

_route_matches(entry, route) if {
	route in entry.routes
}
