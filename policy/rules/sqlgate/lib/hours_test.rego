package sqlgate.lib.hours_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.hours

_config := {
	"routes": {
		"jobs.v1.run": {"groups": ["ops"], "business_hours": true},
		"jobs.v1.status": {"groups": ["ops"]},
	},
	"business_hours": {
		"timezone": "UTC",
		"days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
		"start": "08:00",
		"end": "18:00",
	},
}

# _at(route, ns) is a call of route by ops at ns.
_at(route, ns) := json.patch(fx.call(["ops"], route, {}), [{"op": "replace", "path": "/request/time_ns", "value": ns}])

_monday_0900 := 1767603600000000000

_monday_0730 := 1767598200000000000

_monday_1730 := 1767634200000000000

_monday_1900 := 1767639600000000000

_saturday_1000 := 1768039200000000000

test_within_hours if {
	hours.within(_monday_0900) with data.sqlgate.config as _config
	call.allow with input as _at("jobs.v1.run", _monday_0900) with data.sqlgate.config as _config
}

test_before_start_and_after_end if {
	not call.allow with input as _at("jobs.v1.run", _monday_0730) with data.sqlgate.config as _config
	not call.allow with input as _at("jobs.v1.run", _monday_1900) with data.sqlgate.config as _config
	call.reasons == {"jobs.v1.run may only be called during business hours (Monday, Tuesday, Wednesday, Thursday, Friday, 08:00-18:00 UTC)"} with input as _at("jobs.v1.run", _monday_1900)
		with data.sqlgate.config as _config
}

test_weekend if {
	not call.allow with input as _at("jobs.v1.run", _saturday_1000) with data.sqlgate.config as _config
}

test_unrestricted_routes_any_time if {
	call.allow with input as _at("jobs.v1.status", _saturday_1000) with data.sqlgate.config as _config
}

test_time_zone if {
	cfg := json.patch(_config, [{"op": "replace", "path": "/business_hours/timezone", "value": "Europe/Berlin"}])

	# 17:30 UTC is 18:30 in Berlin (CET, UTC+1): closed there, open in UTC.
	not call.allow with input as _at("jobs.v1.run", _monday_1730) with data.sqlgate.config as cfg
	call.allow with input as _at("jobs.v1.run", _monday_1730) with data.sqlgate.config as _config

	# 07:30 UTC is 08:30 in Berlin: open there, closed in UTC.
	call.allow with input as _at("jobs.v1.run", _monday_0730) with data.sqlgate.config as cfg
}

test_malformed_hours_are_never_open if {
	cfg := json.patch(_config, [{"op": "replace", "path": "/business_hours/start", "value": "8am"}])
	not call.allow with input as _at("jobs.v1.run", _monday_0900) with data.sqlgate.config as cfg
}

test_evaluation_time_without_request_time if {
	req := json.remove(_at("jobs.v1.run", _monday_0900), ["request"])
	call.allow with input as req with data.sqlgate.config as _config with time.now_ns as _monday_0900
	not call.allow with input as req with data.sqlgate.config as _config with time.now_ns as _saturday_1000
}

test_minute_of_day if {
	hours.minute_of_day("00:00") == 0
	hours.minute_of_day("08:30") == 510
	hours.minute_of_day("23:59") == 1439
	every text in ["24:00", "8:30", "08:60", "0830", "", "08:30:00"] {
		not hours.minute_of_day(text)
	}
}
