package sqlgate.lib.limits_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.limits

_config := {
	"grants": [
		{"group": "juniors", "routes": ["payments.v1.refund"]},
		{"group": "seniors", "routes": ["payments.v1.refund"]},
	],
	"limits": [
		{"group": "juniors", "route": "payments.v1.refund", "param": "amount", "max": 100},
		{"group": "seniors", "route": "payments.v1.refund", "param": "amount", "max": 10000, "min": 1},
	],
}

test_violations_per_group if {
	req := fx.call(["juniors", "seniors"], "payments.v1.refund", {"amount": 500})
	limits.violations("juniors") == {"amount 500 exceeds the juniors limit of 100"} with input as req
		with data.sqlgate.config as _config
	limits.violations("seniors") == set() with input as req
		with data.sqlgate.config as _config
}

test_any_group_whose_limits_hold_allows if {
	req := fx.call(["juniors", "seniors"], "payments.v1.refund", {"amount": 500})
	call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {"allowed for group seniors"} with input as req with data.sqlgate.config as _config
}

test_every_broken_limit_is_reported if {
	req := fx.call(["juniors", "seniors"], "payments.v1.refund", {"amount": 50000})
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {
		"amount 50000 exceeds the juniors limit of 100",
		"amount 50000 exceeds the seniors limit of 10000",
	} with input as req
		with data.sqlgate.config as _config
}

test_minimum if {
	req := fx.call(["seniors"], "payments.v1.refund", {"amount": 0})
	call.reasons == {"amount 0 is below the seniors minimum of 1"} with input as req with data.sqlgate.config as _config
}

test_absent_optional_parameter_is_not_checked if {
	call.allow with input as fx.call(["juniors"], "payments.v1.refund", {}) with data.sqlgate.config as _config
}

test_non_numbers_are_denied if {
	every value in ["50", true, null, [1], {"n": 1}] {
		not call.allow with input as fx.call(["juniors"], "payments.v1.refund", {"amount": value})
			with data.sqlgate.config as _config
	}
}

test_misconfigured_bound_denies if {
	cfg := json.patch(_config, [{"op": "replace", "path": "/limits/0/max", "value": "100"}])
	req := fx.call(["juniors"], "payments.v1.refund", {"amount": 1})
	not call.allow with input as req with data.sqlgate.config as cfg
	call.reasons == {"the juniors limit on amount is misconfigured"} with input as req with data.sqlgate.config as cfg
}

test_limits_of_other_routes_do_not_apply if {
	cfg := json.patch(_config, [{"op": "add", "path": "/grants/-", "value": {"group": "juniors", "routes": ["payments.v1.get"]}}])
	call.allow with input as fx.call(["juniors"], "payments.v1.get", {"amount": 500}) with data.sqlgate.config as cfg
}
