package sqlgate.lib.limits_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.limits

_route := {
	"groups": ["juniors", "seniors"],
	"limits": [
		{"group": "juniors", "param": "amount", "max": 100},
		{"group": "seniors", "param": "amount", "min": 1, "max": 10000},
		{"group": "seniors", "param": "items", "max": 3},
	],
}

_config := {"routes": {"payments.v1.refund": _route, "payments.v1.get": {"groups": ["juniors"]}}}

_refund(groups, params) := fx.call(groups, "payments.v1.refund", params)

test_violations_per_group if {
	limits.violations(_route, "juniors") == {"amount 500 exceeds the juniors limit of 100"} with input as _refund(["juniors"], {"amount": 500})
	limits.violations(_route, "seniors") == set() with input as _refund(["seniors"], {"amount": 500})
	limits.violations(_route, "seniors") == {"items 4 exceeds the seniors limit of 3"} with input as _refund(["seniors"], {"amount": 5, "items": 4})
}

# broken is the fast check of the decision path; it must agree with violations.
test_broken_agrees_with_violations if {
	every value in [-5, 0, 1, 50, 100, 100.5, 500, 10000, 10001, "50", true, null, [1], {"n": 1}] {
		every group in ["juniors", "seniors", "others"] {
			_agree(group) with input as _refund([group], {"amount": value})
		}
	}
}

_agree(group) if {
	broken := count([1 | limits.broken(_route, group)]) > 0
	explained := count(limits.violations(_route, group)) > 0
	broken == explained
}

test_any_group_whose_limits_hold_allows if {
	call.allow with input as _refund(["juniors", "seniors"], {"amount": 500}) with data.sqlgate.config as _config
}

test_every_broken_limit_is_reported if {
	req := _refund(["juniors", "seniors"], {"amount": 50000})
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {
		"amount 50000 exceeds the juniors limit of 100",
		"amount 50000 exceeds the seniors limit of 10000",
	} with input as req
		with data.sqlgate.config as _config
}

test_minimum if {
	call.reasons == {"amount 0 is below the seniors minimum of 1"} with input as _refund(["seniors"], {"amount": 0}) with data.sqlgate.config as _config
}

test_absent_optional_parameter_is_not_checked if {
	call.allow with input as _refund(["juniors"], {}) with data.sqlgate.config as _config
}

test_non_numbers_are_denied if {
	every value in ["50", true, null, [1], {"n": 1}] {
		not call.allow with input as _refund(["juniors"], {"amount": value}) with data.sqlgate.config as _config
	}
}

test_limits_of_other_routes_do_not_apply if {
	call.allow with input as fx.call(["juniors"], "payments.v1.get", {"amount": 500}) with data.sqlgate.config as _config
}
