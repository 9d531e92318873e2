package sqlgate.nats

pub contains "orders.v1.get"
