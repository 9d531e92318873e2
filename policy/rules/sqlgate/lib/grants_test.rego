package sqlgate.lib.grants_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.grants

_config := {"routes": {
	"inventory.v1.count": {"groups": ["ops", "viewers"]},
	"inventory.v1.adjust": {"groups": ["ops"]},
	"inventory.v1.audit": {},
}}

test_route_is_the_requested_routes_configuration if {
	grants.route == {"groups": ["ops"]} with input as fx.call(["ops"], "inventory.v1.adjust", {})
		with data.sqlgate.config as _config
	not grants.route with input as fx.call(["ops"], "inventory.v1.unknown", {})
		with data.sqlgate.config as _config
}

test_groups_granted_the_route if {
	grants.groups(_config.routes["inventory.v1.count"]) == {"ops", "viewers"} with input as fx.call(["ops", "viewers", "other"], "inventory.v1.count", {})
		with data.sqlgate.config as _config
	grants.groups(_config.routes["inventory.v1.adjust"]) == {"ops"} with input as fx.call(["ops", "viewers"], "inventory.v1.adjust", {})
		with data.sqlgate.config as _config
}

test_routes_of_all_groups if {
	grants.routes == {"inventory.v1.count", "inventory.v1.adjust"} with input as fx.call(["viewers", "ops"], "x", {})
		with data.sqlgate.config as _config
	grants.routes == set() with input as fx.call(["other"], "x", {})
		with data.sqlgate.config as _config
}

test_call_follows_grants if {
	call.allow with input as fx.call(["viewers"], "inventory.v1.count", {}) with data.sqlgate.config as _config
	not call.allow with input as fx.call(["viewers"], "inventory.v1.adjust", {}) with data.sqlgate.config as _config
}

test_route_without_groups_is_denied_to_all if {
	not call.allow with input as fx.call(["ops"], "inventory.v1.audit", {}) with data.sqlgate.config as _config
}

test_group_names_are_exact if {
	not call.allow with input as fx.call(["Ops"], "inventory.v1.adjust", {}) with data.sqlgate.config as _config
}

test_no_routes_configured_denies_everything if {
	not call.allow with input as fx.call(["ops"], "inventory.v1.count", {}) with data.sqlgate.config as {}
}
