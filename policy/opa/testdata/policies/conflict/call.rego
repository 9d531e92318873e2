package sqlgate.call

default allow := false

# Two values for one complete rule: an evaluation error.
max_rows := 10 if input.params.id > 0

max_rows := 20 if input.params.id > 1

allow if input.route.subject == "orders.v1.get"
