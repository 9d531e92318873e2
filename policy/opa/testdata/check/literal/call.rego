package sqlgate.call

default allow := false

allow if {
	input.route.subject == "orders.v1.refund"
	input.params.amout < 100
}

allow if {
	input.route.subject in {"orders.v1.get", "orders.v1.archive"}
	"support" in input.principal.groups
}

allow if {
	input.route.subject != "orders.v1.get"
	input.params.id > 0
}

allow if {
	input.route.subject == "orders.v1.create"
	input.params.amout > 10
}
