package sqlgate.lib.limits_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.limits

_route := {
	"groups": ["juniors", "seniors"],
	"roles": ["payments.refunder", "payments.admin"],
	"limits": [
		{"group": "juniors", "param": "amount", "max": 100},
		{"group": "seniors", "param": "amount", "min": 1, "max": 10000},
		{"group": "seniors", "param": "items", "max": 3},
		{"role": "payments.refunder", "param": "amount", "max": 500},
	],
}

_config := {"routes": {"payments.v1.refund": _route, "payments.v1.get": {"groups": ["juniors"]}}}

_refund(groups, params) := fx.call(groups, "payments.v1.refund", params)

# _service(roles, params) is a refund by a service holding roles and no group.
_service(roles, params) := json.patch(_refund([], params), [{"op": "replace", "path": "/principal/roles", "value": roles}])

test_violations_per_group if {
	limits.violations(_route, "group", "juniors") == {"amount exceeds the juniors limit of 100"} with input as _refund(["juniors"], {"amount": 500})
	limits.violations(_route, "group", "seniors") == set() with input as _refund(["seniors"], {"amount": 500})
	limits.violations(_route, "group", "seniors") == {"items exceeds the seniors limit of 3"} with input as _refund(["seniors"], {"amount": 5, "items": 4})
}

test_violations_per_role if {
	limits.violations(_route, "role", "payments.refunder") == {"amount exceeds the payments.refunder limit of 500"} with input as _service(["payments.refunder"], {"amount": 501})
	limits.violations(_route, "role", "payments.refunder") == set() with input as _service(["payments.refunder"], {"amount": 500})
	limits.violations(_route, "role", "payments.admin") == set() with input as _service(["payments.admin"], {"amount": 50000})
}

# A limit of a group never applies to a role of the same name, and the other
# way round.
test_limit_names_group_or_role if {
	limits.violations(_route, "role", "juniors") == set() with input as _refund([], {"amount": 500})
	limits.violations(_route, "group", "payments.refunder") == set() with input as _refund([], {"amount": 501})
}

# broken is the fast check of the decision path; it must agree with violations.
test_broken_agrees_with_violations if {
	every value in [-5, 0, 1, 50, 100, 100.5, 500, 501, 10000, 10001, "50", true, null, [1], {"n": 1}] {
		every group in ["juniors", "seniors", "others"] {
			_agree("group", group) with input as _refund([group], {"amount": value})
		}
		every role in ["payments.refunder", "payments.admin", "juniors"] {
			_agree("role", role) with input as _service([role], {"amount": value})
		}
	}
}

_agree(kind, name) if {
	broken := count([1 | limits.broken(_route, kind, name)]) > 0
	explained := count(limits.violations(_route, kind, name)) > 0
	broken == explained
}

test_any_group_whose_limits_hold_allows if {
	call.allow with input as _refund(["juniors", "seniors"], {"amount": 500}) with data.sqlgate.config as _config
}

test_role_limits if {
	call.allow with input as _service(["payments.refunder"], {"amount": 500}) with data.sqlgate.config as _config
	not call.allow with input as _service(["payments.refunder"], {"amount": 501}) with data.sqlgate.config as _config
	call.reasons == {"amount exceeds the payments.refunder limit of 500"} with input as _service(["payments.refunder"], {"amount": 501})
		with data.sqlgate.config as _config
	not call.allow with input as _service(["payments.refunder"], {"amount": "5"}) with data.sqlgate.config as _config
}

# As with several groups, a call is allowed when the limits of one granting
# group or role hold: a role without limits allows any amount, a group's
# higher ceiling lifts a role's lower one.
test_any_group_or_role_whose_limits_hold_allows if {
	call.allow with input as _service(["payments.refunder", "payments.admin"], {"amount": 50000}) with data.sqlgate.config as _config
	req := json.patch(_refund(["seniors"], {"amount": 5000}), [{"op": "replace", "path": "/principal/roles", "value": ["payments.refunder"]}])
	call.allow with input as req with data.sqlgate.config as _config
}

test_every_broken_limit_of_groups_and_roles_is_reported if {
	req := json.patch(_refund(["juniors", "seniors"], {"amount": 50000}), [{"op": "replace", "path": "/principal/roles", "value": ["payments.refunder"]}])
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {
		"amount exceeds the juniors limit of 100",
		"amount exceeds the seniors limit of 10000",
		"amount exceeds the payments.refunder limit of 500",
	} with input as req
		with data.sqlgate.config as _config
}

test_every_broken_limit_is_reported if {
	req := _refund(["juniors", "seniors"], {"amount": 50000})
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {
		"amount exceeds the juniors limit of 100",
		"amount exceeds the seniors limit of 10000",
	} with input as req
		with data.sqlgate.config as _config
}

test_minimum if {
	call.reasons == {"amount is below the seniors minimum of 1"} with input as _refund(["seniors"], {"amount": 0}) with data.sqlgate.config as _config
}

test_absent_optional_parameter_is_not_checked if {
	call.allow with input as _refund(["juniors"], {}) with data.sqlgate.config as _config
	call.allow with input as _service(["payments.refunder"], {}) with data.sqlgate.config as _config
}

test_non_numbers_are_denied if {
	every value in ["50", true, null, [1], {"n": 1}] {
		not call.allow with input as _refund(["juniors"], {"amount": value}) with data.sqlgate.config as _config
	}
}

test_limits_of_other_routes_do_not_apply if {
	call.allow with input as fx.call(["juniors"], "payments.v1.get", {"amount": 500}) with data.sqlgate.config as _config
}

# Reasons are stored verbatim in the signed audit log, where redact_params
# does not reach them: a broken limit names the parameter and the bound, never
# the value (an amount of 5000 redacted from the record's params was in its
# reasons).
test_reasons_never_quote_parameter_values if {
	cfg := {"routes": {"orders.v1.create": {
		"groups": ["sales"],
		"roles": ["orders.writer"],
		"limits": [
			{"group": "sales", "param": "amount", "min": 0, "max": 1000},
			{"role": "orders.writer", "param": "amount", "min": 0, "max": 1000},
		],
		"redact_params": ["note", "amount"],
	}}}
	every value in [5000, -5000, 5000.5, "5000"] {
		every req in [
			fx.call(["sales"], "orders.v1.create", {"amount": value, "note": "rush"}),
			fx.service_call(["orders.writer"], "orders.v1.create", {"amount": value, "note": "rush"}),
		] {
			not call.allow with input as req with data.sqlgate.config as cfg
			"amount" in call.redact_params with input as req with data.sqlgate.config as cfg
			reasons := call.reasons with input as req with data.sqlgate.config as cfg
			count(reasons) > 0
			every reason in reasons {
				not contains(reason, "5000")
			}
		}
	}
}
