package sqlgate.nats

default allow := false

allow if count(pub) > 0

pub contains "orders.v1.get"

# A constant set: each element is checked.
sub := {"orders.v1.cancelled", "invoices.v1.voidd"}
