package sqlgate.call

default allow := false

allow if "sales" in input.principal.groups
