# Test policy for the broker's request-path tests: sales may create (amount
# up to 1000), get and cancel; support may get; everyone else nothing.
package sqlgate.call

default allow := false

_grants := {
	"sales": {"test.orders.create", "test.orders.get", "test.orders.cancel", "test.orders.cancel_all", "test.orders.session", "test.orders.slow_create"},
	"support": {"test.orders.get"},
}

_granted if {
	some g in input.principal.groups
	input.route.subject in _grants[g]
}

_over_limit if {
	input.route.subject == "test.orders.create"
	input.params.amount > 1000
}

allow if {
	_granted
	not _over_limit
}

reasons contains "route not granted" if not _granted

reasons contains "amount exceeds the limit of 1000" if _over_limit

redact_params contains "note" if input.route.subject == "test.orders.create"

max_rows := 2 if input.route.subject == "test.orders.cancel_all"
