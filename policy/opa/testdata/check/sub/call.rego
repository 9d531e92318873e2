package sqlgate.call

default allow := false
