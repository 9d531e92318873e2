package sqlgate.call

default allow := false

allow if "ops" in input.principal.gruops
