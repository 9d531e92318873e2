package sqlgate.lib.grants_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.grants

_config := {"routes": {
	"inventory.v1.count": {"groups": ["ops", "viewers"], "roles": ["inventory.reader"]},
	"inventory.v1.adjust": {"groups": ["ops"]},
	"inventory.v1.audit": {},
	"inventory.v1.restock": {"roles": ["inventory.writer", "Inventory.Admin"]},
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

test_roles_granted_the_route if {
	grants.roles(_config.routes["inventory.v1.restock"]) == {"inventory.writer"} with input as fx.service_call(["inventory.writer", "other"], "inventory.v1.restock", {})
		with data.sqlgate.config as _config
	grants.roles(_config.routes["inventory.v1.adjust"]) == set() with input as fx.service_call(["inventory.writer"], "inventory.v1.adjust", {})
		with data.sqlgate.config as _config
}

test_routes_of_all_groups_and_roles if {
	grants.routes == {"inventory.v1.count", "inventory.v1.restock"} with input as fx.service_call(["inventory.reader", "inventory.writer"], "x", {})
		with data.sqlgate.config as _config
	req := json.patch(fx.call(["ops"], "x", {}), [{"op": "replace", "path": "/principal/roles", "value": ["inventory.writer"]}])
	grants.routes == {"inventory.v1.count", "inventory.v1.adjust", "inventory.v1.restock"} with input as req
		with data.sqlgate.config as _config
}

test_call_follows_role_grants if {
	call.allow with input as fx.service_call(["inventory.writer"], "inventory.v1.restock", {}) with data.sqlgate.config as _config
	call.allow with input as fx.service_call(["inventory.reader"], "inventory.v1.count", {}) with data.sqlgate.config as _config
	not call.allow with input as fx.service_call(["inventory.reader"], "inventory.v1.restock", {}) with data.sqlgate.config as _config
	call.reasons == {"inventory.v1.restock is not granted to any of your groups (none) or roles (inventory.reader)"} with input as fx.service_call(["inventory.reader"], "inventory.v1.restock", {})
		with data.sqlgate.config as _config
}

# Roles grant only through roles and groups only through groups: a group that
# happens to carry a role's name grants nothing.
test_roles_and_groups_are_separate if {
	not call.allow with input as fx.call(["inventory.writer"], "inventory.v1.restock", {}) with data.sqlgate.config as _config
	not call.allow with input as fx.service_call(["ops"], "inventory.v1.adjust", {}) with data.sqlgate.config as _config
	call.reasons == {"inventory.v1.restock is not granted to any of your groups (inventory.writer)"} with input as fx.call(["inventory.writer"], "inventory.v1.restock", {})
		with data.sqlgate.config as _config
}

test_role_names_are_exact if {
	not call.allow with input as fx.service_call(["inventory.admin"], "inventory.v1.restock", {}) with data.sqlgate.config as _config
	call.allow with input as fx.service_call(["Inventory.Admin"], "inventory.v1.restock", {}) with data.sqlgate.config as _config
}

# A principal without roles in its input (a hand-written policy eval input)
# is granted nothing through roles.
test_missing_roles_grant_nothing if {
	req := json.remove(fx.service_call(["inventory.writer"], "inventory.v1.restock", {}), ["principal/roles"])
	not call.allow with input as req with data.sqlgate.config as _config
	call.reasons == {"inventory.v1.restock is not granted to any of your groups (none)"} with input as req with data.sqlgate.config as _config
}
