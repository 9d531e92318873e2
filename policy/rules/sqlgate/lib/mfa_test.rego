package sqlgate.lib.mfa_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx

_config := {
	"grants": [{"group": "ops", "routes": ["keys.v1.rotate", "keys.v1.list"]}],
	"mfa": {"routes": ["keys.v1.rotate"]},
}

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
	recent := json.patch(_config, [{"op": "add", "path": "/mfa/max_auth_age", "value": "2h"}])
	call.allow with input as fx.call(["ops"], "keys.v1.rotate", {}) with data.sqlgate.config as recent

	stale := json.patch(_config, [{"op": "add", "path": "/mfa/max_auth_age", "value": "30m"}])
	not call.allow with input as fx.call(["ops"], "keys.v1.rotate", {}) with data.sqlgate.config as stale
	call.reasons == {"keys.v1.rotate requires a sign-in within the last 30m: sign in again"} with input as fx.call(["ops"], "keys.v1.rotate", {})
		with data.sqlgate.config as stale
}

test_unknown_sign_in_time_is_stale if {
	cfg := json.patch(_config, [{"op": "add", "path": "/mfa/max_auth_age", "value": "2h"}])
	req := json.patch(fx.call(["ops"], "keys.v1.rotate", {}), [{"op": "replace", "path": "/principal/auth_time", "value": 0}])
	not call.allow with input as req with data.sqlgate.config as cfg
}

test_malformed_max_auth_age_denies if {
	cfg := json.patch(_config, [{"op": "add", "path": "/mfa/max_auth_age", "value": "two hours"}])
	not call.allow with input as fx.call(["ops"], "keys.v1.rotate", {}) with data.sqlgate.config as cfg
}

test_mfa_applies_to_break_glass if {
	cfg := object.union(_config, {"break_glass": {"group": "bg", "routes": ["keys.v1.rotate"], "min_reason_length": 3}})
	req := json.patch(_without_mfa(fx.call(["bg"], "keys.v1.rotate", {})), [{"op": "add", "path": "/request/reason", "value": "INC-1"}])
	not call.allow with input as req with data.sqlgate.config as cfg
}
