package sqlgate.call

default allow := false

allow if {
	input.route.subject == "orders.v1.get"
