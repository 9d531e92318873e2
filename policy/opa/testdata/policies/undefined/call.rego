package sqlgate.call

# No default: allow is undefined for every route but orders.v1.get.
allow if input.route.subject == "orders.v1.get"

reasons contains "only orders.v1.get is decided" if input.route.subject != "orders.v1.get"
