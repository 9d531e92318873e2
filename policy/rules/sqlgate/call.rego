# METADATA
# title: Call decisions
# description: |
#   data.sqlgate.call decides one routed call: input.principal calls
#   input.route with input.params. The decision document is this package's
#   allow, reasons, max_rows, timeout_ms and redact_params; rules whose names
#   start with an underscore are helpers and not part of it.
package sqlgate.call

import data.sqlgate.config
import data.sqlgate.lib.breakglass
import data.sqlgate.lib.denylist
import data.sqlgate.lib.grants
import data.sqlgate.lib.hours
import data.sqlgate.lib.limits
import data.sqlgate.lib.mfa
import data.sqlgate.lib.request

default allow := false

# Regular access: a group grants the route and that group's limits hold.
allow if _regular

# Break-glass access replaces grants, limits and business hours, never the
# deny list or MFA.
allow if _break_glass

reasons contains msg if {
	some msg in _blocked
}

reasons contains msg if {
	not allow
	count(grants.groups) == 0
	not breakglass.eligible
	msg := sprintf("%s is not granted to any of your groups (%s)", [input.route.subject, request.groups_text])
}

reasons contains msg if {
	not allow
	some group in grants.groups
	some msg in limits.violations(group)
}

reasons contains msg if {
	not allow
	count(grants.groups) > 0
	some msg in hours.violations
}

reasons contains msg if {
	not allow
	some msg in breakglass.violations
}

reasons contains msg if {
	_regular
	msg := sprintf("allowed for group %s", [concat(", ", sort([g | some g in _allowing_groups]))])
}

reasons contains msg if {
	_break_glass
	msg := sprintf("break-glass access by %s: %s", [request.who, breakglass.reason])
}

# Obligations apply to every decision for the route (redaction matters for
# denied calls too); several entries for one route combine to the strictest.
max_rows := min({n | some o in _obligations; n := o.max_rows})

timeout_ms := min({n | some o in _obligations; n := o.timeout_ms})

redact_params contains param if {
	some o in _obligations
	some param in o.redact_params
}

# Reasons that refuse the call whatever grants it.
_blocked := denylist.violations | mfa.violations

_allowing_groups contains group if {
	some group in grants.groups
	count(limits.violations(group)) == 0
}

_regular if {
	count(_blocked) == 0
	count(hours.violations) == 0
	count(_allowing_groups) > 0
}

_break_glass if {
	count(_blocked) == 0
	not _regular
	breakglass.allowed
}

_obligations contains o if {
	some o in config.obligations
	o.route == input.route.subject
}
