package sqlgate.call

default allow = false

allow {
	input.route.subject == "orders.v1.get"
}
