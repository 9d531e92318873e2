package sqlgate.nats

default allow := true

ttl := "forever" if input.credential.via == "creds"

ttl := -5 if input.credential.via == "callout"

pub contains 42 if input.credential.user_key == "UNUMBER"
