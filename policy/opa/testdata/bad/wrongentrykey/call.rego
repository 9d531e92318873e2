package sqlgate.call

default allow := false

# ttl is an obligation of credentials, not of calls.
ttl := 60
