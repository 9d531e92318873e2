package sqlgate.lib.breakglass_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.breakglass

_config := {
	"routes": {
		"orders.v1.get": {"groups": ["support"]},
		"orders.v1.refund": {
			"groups": ["support"],
			"limits": [{"group": "support", "param": "amount", "max": 10}],
			"business_hours": true,
			"break_glass": true,
		},
	},
	"business_hours": {"timezone": "UTC", "days": ["Saturday"], "start": "08:00", "end": "09:00"},
	"break_glass": {"group": "break-glass", "min_reason_length": 10},
}

_refund(groups, reason) := json.patch(
	fx.call(groups, "orders.v1.refund", {"amount": 5000}),
	[{"op": "add", "path": "/request/reason", "value": reason}],
)

test_reason_required if {
	req := json.remove(_refund(["break-glass"], "x"), ["request/reason"])
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {"break-glass access to orders.v1.refund requires a reason of at least 10 characters (Sqlgate-Reason header)"} with input as req
		with data.sqlgate.config as _config
}

test_short_or_blank_reason if {
	not call.allow with input as _refund(["break-glass"], "because") with data.sqlgate.config as _config
	not call.allow with input as _refund(["break-glass"], "            ") with data.sqlgate.config as _config
}

test_reason_bypasses_grants_limits_and_hours if {
	req := _refund(["break-glass"], "  INC-4711: customer double charged  ")
	call.allow with input as req with data.sqlgate.config as _config
	breakglass.reason == "INC-4711: customer double charged" with input as req with data.sqlgate.config as _config
	call.reasons == {"break-glass access by pat@example.com: INC-4711: customer double charged"} with input as req
		with data.sqlgate.config as _config
}

test_reason_names_the_subject_without_email if {
	req := json.remove(_refund(["break-glass"], "INC-4711: customer double charged"), ["principal/email"])
	call.reasons == {"break-glass access by u-1: INC-4711: customer double charged"} with input as req
		with data.sqlgate.config as _config
}

test_only_break_glass_routes if {
	req := json.patch(_refund(["break-glass"], "INC-4711: customer double charged"), [{"op": "replace", "path": "/route/subject", "value": "orders.v1.get"}])
	not call.allow with input as req with data.sqlgate.config as _config
}

test_only_members if {
	not call.allow with input as _refund(["support"], "INC-4711: customer double charged") with data.sqlgate.config as _config
}

test_regular_access_needs_no_reason if {
	req := fx.call(["support", "break-glass"], "orders.v1.get", {"id": 1})
	call.allow with input as req with data.sqlgate.config as _config
	not call.reasons with input as req with data.sqlgate.config as _config
}
