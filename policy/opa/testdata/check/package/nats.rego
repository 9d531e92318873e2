package sqlgate.nats

default allow := false
