package sqlgate.call

default allow := false

test_allow_is_false if not allow
