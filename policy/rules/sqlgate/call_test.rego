# METADATA
# description: |
#   Tests of data.sqlgate.call with the demo configuration in data.yaml. A
#   team that edits data.yaml edits these tests with it.
package sqlgate.call_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx

_create(groups, amount) := fx.call(groups, "orders.v1.create", {"customer": "acme", "amount": amount})

test_sales_create_within_limit if {
	call.allow with input as _create(["sales"], 500)
	not call.reasons with input as _create(["sales"], 500)
	call.deny == set() with input as _create(["sales"], 500)
}

test_sales_create_at_the_limits if {
	call.allow with input as _create(["sales"], 1000)
	call.allow with input as _create(["sales"], 0)
}

test_sales_create_over_limit if {
	not call.allow with input as _create(["sales"], 5000)
	call.reasons == {"amount exceeds the sales limit of 1000"} with input as _create(["sales"], 5000)
}

test_sales_create_fractional_amount_over_limit if {
	not call.allow with input as _create(["sales"], 1000.01)
	call.reasons == {"amount exceeds the sales limit of 1000"} with input as _create(["sales"], 1000.01)
}

test_sales_create_negative_amount if {
	not call.allow with input as _create(["sales"], -1)
	call.reasons == {"amount is below the sales minimum of 0"} with input as _create(["sales"], -1)
}

test_amount_as_string_is_denied if {
	not call.allow with input as _create(["sales"], "5000")
	call.reasons == {"amount must be a number"} with input as _create(["sales"], "5000")
}

test_sales_get_and_cancel if {
	call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 7})
	call.allow with input as fx.call(["sales"], "orders.v1.cancel", {"id": 7})
}

test_support_may_only_get if {
	call.allow with input as fx.call(["support"], "orders.v1.get", {"id": 7})
	not call.allow with input as _create(["support"], 1)
	not call.allow with input as fx.call(["support"], "orders.v1.cancel", {"id": 7})
	call.reasons == {"orders.v1.cancel is not granted to any of your groups (support)"} with input as fx.call(["support"], "orders.v1.cancel", {"id": 7})
}

test_auditors_call_nothing if {
	every route in ["orders.v1.create", "orders.v1.get", "orders.v1.cancel"] {
		not call.allow with input as fx.call(["auditors"], route, {"id": 7})
	}
	call.reasons == {"orders.v1.get is not granted to any of your groups (auditors)"} with input as fx.call(["auditors"], "orders.v1.get", {"id": 7})
}

test_no_groups if {
	call.reasons == {"orders.v1.get is not granted to any of your groups (none)"} with input as fx.call([], "orders.v1.get", {"id": 7})
}

test_unknown_route_is_denied if {
	not call.allow with input as fx.call(["sales"], "orders.v1.delete", {"id": 7})
	call.reasons == {"orders.v1.delete is not granted to any of your groups (sales)"} with input as fx.call(["sales"], "orders.v1.delete", {"id": 7})
}

test_member_of_support_and_sales_is_held_to_the_sales_limit if {
	not call.allow with input as _create(["support", "sales"], 5000)
	call.reasons == {"amount exceeds the sales limit of 1000"} with input as _create(["support", "sales"], 5000)
}

test_obligations_for_get if {
	call.max_rows == 100 with input as fx.call(["sales"], "orders.v1.get", {"id": 7})
	call.timeout_ms == 5000 with input as fx.call(["sales"], "orders.v1.get", {"id": 7})
	not call.redact_params with input as fx.call(["sales"], "orders.v1.get", {"id": 7})
}

test_note_is_redacted_on_allow_and_deny if {
	call.redact_params == ["note"] with input as _create(["sales"], 1)
	call.redact_params == ["note"] with input as _create(["support"], 1)
	not call.max_rows with input as _create(["sales"], 1)
}

test_break_glass_needs_a_reason if {
	req := fx.call(["break-glass"], "orders.v1.cancel", {"id": 7})
	not call.allow with input as req
	call.reasons == {"break-glass access to orders.v1.cancel requires a reason of at least 10 characters (Sqlgate-Reason header)"} with input as req
}

test_break_glass_with_a_reason if {
	req := json.patch(fx.call(["break-glass"], "orders.v1.cancel", {"id": 7}), [{"op": "add", "path": "/request/reason", "value": "INC-4711 duplicate order"}])
	call.allow with input as req
	call.reasons == {"break-glass access by pat@example.com: INC-4711 duplicate order"} with input as req
}

# An allow by a rule a policy adds (allow mocked true here) is no break-glass
# access: the signed audit record of the call must not say it was, with an
# empty justification, for a principal outside the break-glass group.
test_custom_allow_is_not_recorded_as_break_glass if {
	req := fx.call(["support"], "orders.v1.cancel", {"id": 7})
	not call.reasons with input as req with data.sqlgate.call.allow as true
}

_with_deny(entries) := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": entries}])

# deny holds the deny list's refusal whatever allows the call, here an allow
# rule a policy adds (mocked true): the engine denies with deny's messages.
test_deny_list_beats_custom_grant if {
	req := fx.call(["support"], "orders.v1.cancel", {"id": 7})
	cfg := _with_deny([{"principals": ["u-1"], "reason": "account under investigation"}])
	call.deny == {"account under investigation"} with input as req with data.sqlgate.config as cfg
		with data.sqlgate.call.allow as true
	scoped := _with_deny([{"groups": ["support"], "routes": ["orders.v1.cancel"], "reason": "support may not cancel"}])
	call.deny == {"support may not cancel"} with input as req with data.sqlgate.config as scoped
		with data.sqlgate.call.allow as true
	call.deny == set() with input as fx.call(["support"], "orders.v1.get", {"id": 7}) with data.sqlgate.config as scoped
}

# Likewise a route's MFA requirement.
test_mfa_beats_custom_grant if {
	req := json.patch(fx.call(["support"], "orders.v1.cancel", {"id": 7}), [{"op": "replace", "path": "/principal/mfa", "value": false}])
	cfg := json.patch(data.sqlgate.config, [{"op": "add", "path": "/routes/orders.v1.cancel/mfa", "value": true}])
	call.deny == {"orders.v1.cancel requires multi-factor authentication: sign in again with MFA"} with input as req
		with data.sqlgate.config as cfg
		with data.sqlgate.call.allow as true
}

test_break_glass_cannot_create if {
	req := json.patch(_create(["break-glass"], 1), [{"op": "add", "path": "/request/reason", "value": "INC-4711 duplicate order"}])
	not call.allow with input as req
}

# The dev service client orders-service holds the app role orders.writer and
# no group: it may create orders (amount 0-1000) and get them.
_service_create(amount) := fx.service_call(["orders.writer"], "orders.v1.create", {"customer": "acme", "amount": amount})

test_orders_writer_creates_within_limit if {
	call.allow with input as _service_create(1000)
	not call.reasons with input as _service_create(1000)
	call.redact_params == ["note"] with input as _service_create(1000)
}

test_orders_writer_create_over_limit if {
	not call.allow with input as _service_create(1000.5)
	call.reasons == {"amount exceeds the orders.writer limit of 1000"} with input as _service_create(1000.5)
	call.reasons == {"amount is below the orders.writer minimum of 0"} with input as _service_create(-1)
}

test_orders_writer_gets if {
	call.allow with input as fx.service_call(["orders.writer"], "orders.v1.get", {"id": 7})
	call.max_rows == 100 with input as fx.service_call(["orders.writer"], "orders.v1.get", {"id": 7})
}

test_orders_writer_may_not_cancel_or_import if {
	not call.allow with input as fx.service_call(["orders.writer"], "orders.v1.cancel", {"id": 7})
	call.reasons == {"orders.v1.cancel is not granted to any of your groups (none) or roles (orders.writer)"} with input as fx.service_call(["orders.writer"], "orders.v1.cancel", {"id": 7})
	not call.allow with input as fx.service_call(["orders.writer"], "orders.v1.import", {"customer": "acme", "amount": 1})
}

test_other_roles_call_nothing if {
	every route in ["orders.v1.create", "orders.v1.get", "orders.v1.cancel", "orders.v1.import"] {
		not call.allow with input as fx.service_call(["orders.reader", "Orders.Writer"], route, {"id": 7})
	}
}
