package sqlgate.lib.grants_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.grants

_config := {"grants": [
	{"group": "ops", "routes": ["inventory.v1.count", "inventory.v1.adjust"]},
	{"group": "viewers", "routes": ["inventory.v1.count"]},
	{"group": "empty", "routes": []},
]}

test_groups_granting_the_route if {
	grants.groups == {"ops", "viewers"} with input as fx.call(["ops", "viewers", "other"], "inventory.v1.count", {})
		with data.sqlgate.config as _config
	grants.groups == {"ops"} with input as fx.call(["ops", "viewers"], "inventory.v1.adjust", {})
		with data.sqlgate.config as _config
}

test_routes_of_all_groups if {
	grants.routes == {"inventory.v1.count", "inventory.v1.adjust"} with input as fx.call(["viewers", "ops"], "x", {})
		with data.sqlgate.config as _config
	grants.routes == set() with input as fx.call(["empty"], "x", {})
		with data.sqlgate.config as _config
}

test_call_follows_grants if {
	call.allow with input as fx.call(["viewers"], "inventory.v1.count", {}) with data.sqlgate.config as _config
	not call.allow with input as fx.call(["viewers"], "inventory.v1.adjust", {}) with data.sqlgate.config as _config
}

test_group_names_are_exact if {
	not call.allow with input as fx.call(["Ops"], "inventory.v1.adjust", {}) with data.sqlgate.config as _config
}

test_no_grants_configured_denies_everything if {
	not call.allow with input as fx.call(["ops"], "inventory.v1.count", {}) with data.sqlgate.config as {}
}
