# METADATA
# description: |
#   Tests of data.sqlgate.call with the demo configuration in data.yaml. A
#   team that edits data.yaml edits these tests with it.
package sqlgate.call_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx

test_sales_create_within_limit if {
	call.allow with input as fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": 500})
	call.reasons == {"allowed for group sales"} with input as fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": 500})
}

test_sales_create_at_limit if {
	call.allow with input as fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": 1000})
}

test_sales_create_over_limit if {
	req := fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": 5000})
	not call.allow with input as req
	call.reasons == {"amount 5000 exceeds the sales limit of 1000"} with input as req
}

test_sales_create_fractional_amount_over_limit if {
	req := fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": 1000.01})
	not call.allow with input as req
	call.reasons == {"amount 1000.01 exceeds the sales limit of 1000"} with input as req
}

test_sales_create_negative_amount if {
	req := fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": -1})
	not call.allow with input as req
	call.reasons == {"amount -1 is below the sales minimum of 0"} with input as req
}

test_amount_as_string_is_denied if {
	req := fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": "5000"})
	not call.allow with input as req
	call.reasons == {"amount must be a number"} with input as req
}

test_sales_get_and_cancel if {
	call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 7})
	call.allow with input as fx.call(["sales"], "orders.v1.cancel", {"id": 7})
}

test_support_may_only_get if {
	call.allow with input as fx.call(["support"], "orders.v1.get", {"id": 7})
	not call.allow with input as fx.call(["support"], "orders.v1.create", {"customer": "acme", "amount": 1})
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
	not call.allow with input as fx.call([], "orders.v1.get", {"id": 7})
	call.reasons == {"orders.v1.get is not granted to any of your groups (none)"} with input as fx.call([], "orders.v1.get", {"id": 7})
}

test_unknown_route_is_denied if {
	not call.allow with input as fx.call(["sales"], "orders.v1.delete", {"id": 7})
}

test_support_member_in_sales_still_limited if {
	req := fx.call(["support", "sales"], "orders.v1.create", {"customer": "acme", "amount": 5000})
	not call.allow with input as req
	call.reasons == {"amount 5000 exceeds the sales limit of 1000"} with input as req
}

test_obligations_for_get if {
	req := fx.call(["sales"], "orders.v1.get", {"id": 7})
	call.max_rows == 100 with input as req
	call.timeout_ms == 5000 with input as req
	not call.redact_params.note with input as req
}

test_note_is_redacted_on_allow_and_deny if {
	call.redact_params == {"note"} with input as fx.call(["sales"], "orders.v1.create", {"customer": "acme", "amount": 1, "note": "x"})
	call.redact_params == {"note"} with input as fx.call(["support"], "orders.v1.create", {"customer": "acme", "amount": 1, "note": "x"})
}

test_break_glass_needs_reason if {
	req := fx.call(["break-glass"], "orders.v1.cancel", {"id": 7})
	not call.allow with input as req
	call.reasons == {"break-glass access to orders.v1.cancel requires a reason of at least 10 characters (Sqlgate-Reason header)"} with input as req
}

test_break_glass_with_reason if {
	req := json.patch(fx.call(["break-glass"], "orders.v1.cancel", {"id": 7}), [{"op": "add", "path": "/request/reason", "value": "INC-4711 duplicate order"}])
	call.allow with input as req
	call.reasons == {"break-glass access by pat@example.com: INC-4711 duplicate order"} with input as req
}

test_break_glass_route_not_listed if {
	req := json.patch(fx.call(["break-glass"], "orders.v1.create", {"customer": "acme", "amount": 1}), [{"op": "add", "path": "/request/reason", "value": "INC-4711 duplicate order"}])
	not call.allow with input as req
}
