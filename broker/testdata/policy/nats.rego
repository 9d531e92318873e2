package sqlgate.nats

default allow := false

_grants := {
	"sales": {"test.orders.create", "test.orders.get", "test.orders.cancel", "not.a.route"},
	"support": {"test.orders.get"},
}

pub contains s if {
	some g in input.principal.groups
	some s in _grants[g]
}

allow if count(pub) > 0

reasons contains "no routes" if count(pub) == 0

ttl := 600

# Subjects to follow: the broker keeps only the catalog's emit subjects.
sub := {"test.orders.created", ">", "sqlgate.reply.UOTHER.>", "_INBOX_UOTHER.>"}
