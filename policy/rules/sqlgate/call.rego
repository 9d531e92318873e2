# METADATA
# title: Call decisions
# description: |
#   data.sqlgate.call decides one routed call: input.principal calls
#   input.route with input.params. The decision document is this package's
#   allow, reasons, max_rows, timeout_ms and redact_params; rules whose names
#   start with an underscore are helpers and not part of it.
#
#   Written for the decision path: each reference to a rule costs about a
#   microsecond, so the route's configuration is read once into a variable and
#   passed to functions, and the messages of a deny are built only when
#   denying.
package sqlgate.call

import data.sqlgate.lib.breakglass
import data.sqlgate.lib.denylist
import data.sqlgate.lib.grants
import data.sqlgate.lib.hours
import data.sqlgate.lib.limits
import data.sqlgate.lib.mfa
import data.sqlgate.lib.request

default allow := false

# Regular access: a group or role of the principal is granted the route, that
# group's or role's limits hold, and the call is within business hours where
# the route requires it. The deny list and MFA refuse what anything else
# allows.
allow if _regular

# Break-glass access replaces grants, limits and business hours.
allow if _break_glass

# reasons explain a deny to the caller; a break-glass allow records its
# justification.
reasons := _deny_reasons if not allow

reasons := {sprintf("break-glass access by %s: %s", [request.who, breakglass.reason])} if {
	not _regular
	allow
}

# Obligations of the route. They apply to every decision: redaction matters
# for denied calls too.
max_rows := grants.route.max_rows

timeout_ms := grants.route.timeout_ms

redact_params := grants.route.redact_params

_regular if {
	route := grants.route
	some group in route.groups
	group in input.principal.groups
	not limits.broken(route, "group", group)
	hours.open(route)
	not _blocked(route)
}

_regular if {
	route := grants.route
	some role in route.roles
	role in input.principal.roles
	not limits.broken(route, "role", role)
	hours.open(route)
	not _blocked(route)
}

_break_glass if {
	not _regular
	route := grants.route
	breakglass.allowed(route)
	not _blocked(route)
}

_blocked(_) if denylist.denied(input.route.subject)

_blocked(route) if mfa.missing(route)

_deny_reasons contains msg if {
	some msg in denylist.violations(input.route.subject)
}

_deny_reasons contains msg if {
	some msg in mfa.violations(grants.route)
}

_deny_reasons contains msg if {
	not _granted
	not _eligible
	msg := sprintf("%s is not granted to any of your %s", [input.route.subject, request.grantees_text])
}

_deny_reasons contains msg if {
	route := grants.route
	some group in route.groups
	group in input.principal.groups
	some msg in limits.violations(route, "group", group)
}

_deny_reasons contains msg if {
	route := grants.route
	some role in route.roles
	role in input.principal.roles
	some msg in limits.violations(route, "role", role)
}

_deny_reasons contains msg if {
	_granted
	some msg in hours.violations(grants.route)
}

# A rule reference as a function argument under `not` is evaluated before the
# negation (an undefined route would make the whole body fail), so these
# helpers wrap the calls.
_granted if count(grants.groups(grants.route)) > 0

_granted if count(grants.roles(grants.route)) > 0

_eligible if breakglass.eligible(grants.route)

_deny_reasons contains msg if {
	some msg in breakglass.violations(grants.route)
}
