package sqlgate.call

default allow := false

max_rows.get := 10
