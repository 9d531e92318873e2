package sqlgate.lib.mfa_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.mfa

_config := {"routes": {
	"keys.v1.rotate": {"groups": ["ops"], "mfa": true, "break_glass": true},
	"keys.v1.list": {"groups": ["ops"]},
	"keys.v1.export": {"groups": ["ops"], "max_auth_age": "30m"},
	"keys.v1.revoke": {"groups": ["ops"], "max_auth_age": "2h"},
}}

_without_mfa(req) := json.patch(req, [{"op": "replace", "path": "/principal/mfa", "value": false}])

test_mfa_required if {
	req := _without_mfa(fx.call(["ops"], "keys.v1.rotate", {}))
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {"keys.v1.rotate requires multi-factor authentication: sign in again with MFA"} with input as req
		with data.sqlgate.config as _config
}

test_mfa_present if {
	call.allow with input as fx.call(["ops"], "keys.v1.rotate", {}) with data.sqlgate.config as _config
}

test_other_routes_without_mfa if {
	call.allow with input as _without_mfa(fx.call(["ops"], "keys.v1.list", {})) with data.sqlgate.config as _config
}

test_missing_mfa_claim_is_no_mfa if {
	req := json.remove(fx.call(["ops"], "keys.v1.rotate", {}), ["principal/mfa"])
	not call.allow with input as req with data.sqlgate.config as _config
}

test_recent_sign_in if {
	# The fixture principal signed in one hour before the request.
	call.allow with input as fx.call(["ops"], "keys.v1.revoke", {}) with data.sqlgate.config as _config
	not call.allow with input as fx.call(["ops"], "keys.v1.export", {}) with data.sqlgate.config as _config
	call.reasons == {"keys.v1.export requires a sign-in within the last 30m: sign in again"} with input as fx.call(["ops"], "keys.v1.export", {})
		with data.sqlgate.config as _config
}

test_unknown_sign_in_time_is_not_recent if {
	req := json.patch(fx.call(["ops"], "keys.v1.revoke", {}), [{"op": "replace", "path": "/principal/auth_time", "value": 0}])
	not call.allow with input as req with data.sqlgate.config as _config
}

# missing is the fast check of the decision path; it must agree with violations.
test_missing_agrees_with_violations if {
	every subject, route in _config.routes {
		every req in [fx.call(["ops"], subject, {}), _without_mfa(fx.call(["ops"], subject, {}))] {
			_agree(route) with input as req
		}
	}
}

_agree(route) if {
	missing := count([1 | mfa.missing(route)]) > 0
	explained := count(mfa.violations(route)) > 0
	missing == explained
}

test_mfa_applies_to_break_glass if {
	cfg := object.union(_config, {"break_glass": {"group": "bg", "min_reason_length": 3}})
	req := json.patch(_without_mfa(fx.call(["bg"], "keys.v1.rotate", {})), [{"op": "add", "path": "/request/reason", "value": "INC-1"}])
	not call.allow with input as req with data.sqlgate.config as cfg
	call.allow with input as json.patch(req, [{"op": "replace", "path": "/principal/mfa", "value": true}]) with data.sqlgate.config as cfg
}
