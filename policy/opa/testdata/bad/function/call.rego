package sqlgate.call

default allow := false

reasons(x) := {x}
