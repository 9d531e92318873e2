package sqlgate.nats

default allow := false

allow if count(pub) > 0

# A route, a misspelt one and a wildcard: the broker would drop the last two.
pub contains "orders.v1.get"

pub contains "orders.v1.gett"

pub contains ">" if input.principal.service
