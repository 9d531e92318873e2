# METADATA
# description: |
#   Deny lists (data.sqlgate.config.deny): entries that refuse principals or
#   groups some or all routes, whatever else allows them. An entry without
#   routes refuses everything: every route, NATS credentials and SQL
#   credentials.
#
#   `principals` names principals by their stable identifier: the subject
#   (input.principal.subject, exact and case-sensitive), from any trusted
#   issuer, or "<issuer> <subject>", from that issuer only, as `sqlgate whoami`
#   and the audit records show them. E-mail addresses do not match: the e-mail
#   comes from claims (preferred_username, upn, an unverified email) that the
#   user or an administrator can change, and a renamed account would leave the
#   list.
#
#   The deny list fails closed: an entry that lint would refuse (not an
#   object, e.g. a bare e-mail address written without `principals:`, with
#   principals, groups or routes that are not lists of strings, or with an
#   e-mail address among its principals) matches every principal on every
#   route, and so does a deny list that is not a list.
package sqlgate.lib.denylist

import data.sqlgate.config

# denied(subject) is true when an entry matches the principal and route
# subject. It is the fast check on the decision path; violations explains it
# (the tests hold the two in agreement).
denied(subject) if {
	some entry in _entries
	_principal_matches(entry)
	_route_matches(entry, subject)
}

# violations(subject) holds the reasons of the entries that match the
# principal and route subject.
violations(subject) := {_reason(entry) |
	some entry in _entries
	_principal_matches(entry)
	_route_matches(entry, subject)
}

# routes is the set of route subjects (keys of config.routes) the deny list
# refuses the principal: those named by the entries with routes that match
# it, and every route when an entry excludes it. It is built from the
# entries, not from the routes: for a principal no entry names it costs one
# pass over the deny list, however many routes the catalog has. (Asking
# denied for each route of a large catalog, for every principal, took longer
# than the evaluation timeout and so refused everyone's credentials.)
routes contains subject if {
	some entry in _entries
	_principal_matches(entry)
	not _all_routes(entry)
	some subject in entry.routes

	# A subject of no route (lint refuses it) is left out, as denied leaves it.
	_ = config.routes[subject]
}

routes contains subject if {
	excluded
	some subject, _ in config.routes
}

# excluded is true when an entry without routes matches the principal (or
# the deny list is malformed): the principal may have nothing, no route and
# no credential. The credential entry points check it; exclusions explains it.
excluded if {
	some entry in _entries
	_principal_matches(entry)
	_all_routes(entry)
}

# exclusions holds the reasons of the entries that exclude the principal.
exclusions := {_reason(entry) |
	some entry in _entries
	_principal_matches(entry)
	_all_routes(entry)
}

# _entries is the deny list; one that is not a list is one malformed entry.
_entries := object.get(config, "deny", []) if {
	is_array(object.get(config, "deny", []))
} else := ["the deny list is not a list"] if {
	is_object(config)
}

_reason(entry) := entry.reason if {
	is_string(entry.reason)
} else := "denied by the deny list"

# An entry without principals and groups matches every principal.
_principal_matches(entry) if {
	not "principals" in object.keys(entry)
	not "groups" in object.keys(entry)
}

_principal_matches(entry) if {
	input.principal.subject in entry.principals
}

_principal_matches(entry) if {
	concat(" ", [input.principal.issuer, input.principal.subject]) in entry.principals
}

_principal_matches(entry) if {
	some group in entry.groups
	group in input.principal.groups
}

# A malformed entry matches everyone.
_principal_matches(entry) if not _well_formed(entry)

# An entry without routes (or a malformed one) matches every route.
_route_matches(entry, _) if _all_routes(entry)

_route_matches(entry, subject) if {
	subject in entry.routes
}

_all_routes(entry) if {
	is_object(entry)
	not "routes" in object.keys(entry)
}

_all_routes(entry) if not _well_formed(entry)

_well_formed(entry) if {
	is_object(entry)
	_strings(object.get(entry, "principals", []))
	_strings(object.get(entry, "groups", []))
	_strings(object.get(entry, "routes", []))
	not _names_an_email(entry)
}

_names_an_email(entry) if {
	some p in entry.principals
	email_shaped(p)
}

# email_shaped(p) is true when the principals entry p looks like an e-mail
# address (an "@" and no space), which names no principal here. (A subject
# that looks like one is written "<issuer> <subject>".) lint refuses it.
email_shaped(p) if {
	contains(p, "@")
	not contains(p, " ")
}

_strings(value) if {
	is_array(value)
	every e in value {
		is_string(e)
	}
}
