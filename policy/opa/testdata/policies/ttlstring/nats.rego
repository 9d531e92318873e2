package sqlgate.nats

default allow := false

allow if "ops" in input.principal.groups

# ttl may be a Go duration string as well as a number of seconds.
ttl := "15m"

pub := ["jobs.v1.run", "jobs.v1.status"]

sub := ["jobs.v1.events.>"]

reasons := ["third", "first", "second"]
