# METADATA
# title: Call decisions
# description: |
#   data.sqlgate.call decides one routed call: input.principal calls
#   input.route with input.params. The decision document is this package's
#   allow, deny, reasons, max_rows, timeout_ms and redact_params; rules whose
#   names start with an underscore are helpers and not part of it.
#
#   deny refuses whatever allow says: the engine denies a call for which it
#   holds any message, with its messages as the reasons. The deny list and
#   MFA are written as deny rules, so an allow rule added to this package
#   for a route of its own cannot let a deny-listed principal, or one
#   without the MFA a route requires, through.
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
# group's or role's limits hold, the call is within business hours where the
# route requires it, and nothing in deny refuses it.
allow if _regular

# Break-glass access replaces grants, limits and business hours, not deny.
allow if _break_glass

# The deny list refuses the principal the route, whatever allows it.
deny contains msg if {
	denylist.denied(input.route.subject)
	some msg in denylist.violations(input.route.subject)
}

# A route that requires MFA or a recent sign-in refuses a token without
# them, whatever allows it.
deny contains msg if {
	route := grants.route
	mfa.missing(route)
	some msg in mfa.violations(route)
}

# reasons explain a deny to the caller; a break-glass allow records its
# justification. An allow by another rule (one a policy adds) records none:
# it is not break-glass access.
reasons := _deny_reasons if not allow

reasons := {sprintf("break-glass access by %s: %s", [request.who, breakglass.reason])} if _break_glass

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
	count(deny) == 0
}

_regular if {
	route := grants.route
	some role in route.roles
	role in input.principal.roles
	not limits.broken(route, "role", role)
	hours.open(route)
	count(deny) == 0
}

_break_glass if {
	not _regular
	breakglass.allowed(grants.route)
	count(deny) == 0
}

_deny_reasons contains msg if {
	some msg in deny
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
