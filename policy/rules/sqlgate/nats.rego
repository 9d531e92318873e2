# METADATA
# title: NATS credential decisions
# description: |
#   data.sqlgate.nats decides a NATS user credential for input.principal: pub is
#   the set of route subjects the principal may call, granted to its groups or
#   roles or open to it by break-glass (the broker intersects it with the route
#   catalog and also uses it to list "routes I may call"), sub the set of
#   emit subjects whose events the principal may follow, granted to its
#   groups or roles in config.events (the broker keeps only the catalog's
#   emit subjects), ttl the credential's lifetime. Without any route or event
#   there is no credential.
package sqlgate.nats

import data.sqlgate.config
import data.sqlgate.lib.breakglass
import data.sqlgate.lib.denylist
import data.sqlgate.lib.grants
import data.sqlgate.lib.request

default allow := false

allow if count(pub) > 0

# A consumer granted events and no route may still follow them.
allow if count(sub) > 0

reasons contains msg if {
	count(pub) == 0
	count(sub) == 0
	not denylist.excluded
	msg := sprintf("no route is granted to any of your %s", [request.grantees_text])
}

# A deny-list entry without routes refuses the credential with its reason
# (its principal has no route left in pub).
reasons contains msg if {
	count(pub) == 0
	some msg in denylist.exclusions
}

# Business hours, limits and MFA are decided per call, so routes they restrict
# stay in pub; the deny list removes routes for good.
pub contains subject if {
	some subject in grants.routes
	not denylist.denied(subject)
}

pub contains subject if {
	breakglass.member
	some subject, route in config.routes
	route.break_glass == true
	not denylist.denied(subject)
}

# Events are granted like routes, to groups or roles. A deny-list entry
# without routes refuses them with the rest of the credential; entries with
# routes name routes, not emit subjects.
sub contains subject if {
	some subject in grants.events
	not denylist.excluded
}

# ttl is the requested lifetime (seconds) when shorter than the configured
# maximum, else the maximum.
ttl := input.credential.ttl if {
	input.credential.ttl > 0
	input.credential.ttl < _max_ttl
} else := _max_ttl

_max_ttl := time.parse_duration_ns(config.nats.ttl) / 1000000000
