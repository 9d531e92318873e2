# METADATA
# description: Tests of data.sqlgate.nats with the demo configuration.
package sqlgate.nats_test

import data.sqlgate.fixtures_test as fx
import data.sqlgate.nats

_nats(groups, ttl) := fx.credential(groups, {"type": "nats", "ttl": ttl})

test_sales_may_publish_their_routes if {
	nats.allow with input as _nats(["sales"], 0)
	nats.pub == {"orders.v1.create", "orders.v1.get", "orders.v1.cancel", "orders.v1.import"} with input as _nats(["sales"], 0)
	nats.ttl == 900 with input as _nats(["sales"], 0)
	nats.reasons == set() with input as _nats(["sales"], 0)
}

test_support_may_publish_get_only if {
	nats.pub == {"orders.v1.get"} with input as _nats(["support"], 0)
}

test_auditors_get_no_credential if {
	not nats.allow with input as _nats(["auditors"], 0)
	nats.reasons == {"no route is granted to any of your groups (auditors)"} with input as _nats(["auditors"], 0)
}

# The dev service client: its role's routes, the reason the newcomer saw
# when the library granted routes to groups only.
test_orders_writer_may_publish_create_and_get if {
	req := fx.service_credential(["orders.writer"], {"type": "nats", "ttl": 0})
	nats.allow with input as req
	nats.pub == {"orders.v1.create", "orders.v1.get"} with input as req
	nats.reasons == set() with input as req
}

test_unknown_role_gets_no_credential if {
	req := fx.service_credential(["orders.reader"], {"type": "nats", "ttl": 0})
	not nats.allow with input as req
	nats.reasons == {"no route is granted to any of your groups (none) or roles (orders.reader)"} with input as req
}

test_groups_and_roles_add_up if {
	req := json.patch(_nats(["support"], 0), [{"op": "replace", "path": "/principal/roles", "value": ["orders.writer"]}])
	nats.pub == {"orders.v1.create", "orders.v1.get"} with input as req
}

test_deny_list_removes_role_granted_routes if {
	cfg := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": [{"principals": ["orders-service"], "routes": ["orders.v1.create"]}]}])
	req := fx.service_credential(["orders.writer"], {"type": "nats", "ttl": 0})
	nats.pub == {"orders.v1.get"} with input as req with data.sqlgate.config as cfg
}

test_shorter_ttl_is_honoured if {
	nats.ttl == 300 with input as _nats(["sales"], 300)
}

test_longer_ttl_is_capped if {
	nats.ttl == 900 with input as _nats(["sales"], 86400)
}

test_break_glass_members_may_publish_break_glass_routes if {
	nats.pub == {"orders.v1.get", "orders.v1.cancel"} with input as _nats(["break-glass"], 0)
}

test_deny_list_removes_routes if {
	cfg := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": [{"groups": ["sales"], "routes": ["orders.v1.cancel"], "reason": "frozen"}]}])
	nats.pub == {"orders.v1.create", "orders.v1.get", "orders.v1.import"} with input as _nats(["sales"], 0)
		with data.sqlgate.config as cfg
}

test_without_configured_ttl_there_is_no_ttl_obligation if {
	cfg := json.remove(data.sqlgate.config, ["nats"])
	nats.allow with input as _nats(["sales"], 0) with data.sqlgate.config as cfg
	not nats.ttl with input as _nats(["sales"], 0) with data.sqlgate.config as cfg
}

test_deny_listed_principal_gets_no_credential if {
	cfg := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": [{"principals": ["u-1"], "reason": "account under investigation"}]}])
	not nats.allow with input as _nats(["sales"], 0) with data.sqlgate.config as cfg
	nats.pub == set() with input as _nats(["sales"], 0) with data.sqlgate.config as cfg
	nats.reasons == {"account under investigation"} with input as _nats(["sales"], 0) with data.sqlgate.config as cfg
}

# Events are granted in config.events, to groups or roles.
test_sales_may_follow_their_events if {
	nats.sub == {"orders.v1.created", "orders.v1.cancelled", "orders.v1.imported"} with input as _nats(["sales"], 0)
	nats.sub == set() with input as _nats(["support"], 0)
}

test_orders_writer_may_follow_created_orders if {
	req := fx.service_credential(["orders.writer"], {"type": "nats", "ttl": 0})
	nats.sub == {"orders.v1.created"} with input as req
}

# A consumer granted only events gets a credential to follow them.
test_events_alone_grant_a_credential if {
	cfg := json.patch(data.sqlgate.config, [{"op": "add", "path": "/events/orders.v1.created/groups/-", "value": "auditors"}])
	nats.allow with input as _nats(["auditors"], 0) with data.sqlgate.config as cfg
	nats.pub == set() with input as _nats(["auditors"], 0) with data.sqlgate.config as cfg
	nats.sub == {"orders.v1.created"} with input as _nats(["auditors"], 0) with data.sqlgate.config as cfg
	nats.reasons == set() with input as _nats(["auditors"], 0) with data.sqlgate.config as cfg
}

# A deny-list entry without routes refuses events with the credential; one
# with routes leaves them.
test_deny_list_and_events if {
	out := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": [{"principals": ["u-1"], "reason": "away"}]}])
	not nats.allow with input as _nats(["sales"], 0) with data.sqlgate.config as out
	nats.sub == set() with input as _nats(["sales"], 0) with data.sqlgate.config as out
	some_routes := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": [{"principals": ["u-1"], "routes": ["orders.v1.create"]}]}])
	nats.sub == {"orders.v1.created", "orders.v1.cancelled", "orders.v1.imported"} with input as _nats(["sales"], 0) with data.sqlgate.config as some_routes
}

_with_deny(entries) := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": entries}])

# The deny list refuses whatever pub holds, here routes a policy's own pub
# rule adds (mocked): deny_pub holds the routes an entry with routes refuses
# (the engine removes them from pub), deny the reason of an entry without
# routes (the engine refuses the credential).
test_deny_list_beats_custom_pub if {
	scoped := _with_deny([{"principals": ["u-1"], "routes": ["orders.v1.cancel"], "reason": "frozen"}])
	nats.deny_pub == {"orders.v1.cancel"} with input as _nats(["support"], 0) with data.sqlgate.config as scoped
		with data.sqlgate.nats.pub as {"orders.v1.get", "orders.v1.cancel"}
	nats.deny == set() with input as _nats(["support"], 0) with data.sqlgate.config as scoped
	out := _with_deny([{"principals": ["u-1"], "reason": "account under investigation"}])
	nats.deny == {"account under investigation"} with input as _nats(["support"], 0) with data.sqlgate.config as out
		with data.sqlgate.nats.pub as {"orders.v1.cancel"}
	nats.deny_pub == {"orders.v1.create", "orders.v1.get", "orders.v1.cancel", "orders.v1.import"} with input as _nats(["support"], 0)
		with data.sqlgate.config as out
}

# A deny list that is not a list fails closed: it refuses every route.
test_malformed_deny_list_refuses_every_route if {
	cfg := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": "mallory"}])
	nats.deny_pub == {"orders.v1.create", "orders.v1.get", "orders.v1.cancel", "orders.v1.import"} with input as _nats(["sales"], 0)
		with data.sqlgate.config as cfg
	nats.deny == {"denied by the deny list"} with input as _nats(["sales"], 0) with data.sqlgate.config as cfg
}

test_no_deny_without_deny_list if {
	nats.deny == set() with input as _nats(["sales"], 0)
	nats.deny_pub == set() with input as _nats(["sales"], 0)
}

# A credential allowed by a rule a policy adds (allow mocked true) is not
# explained as refused in its audit record.
test_custom_allow_is_not_explained_as_refused if {
	nats.reasons == set() with input as _nats(["auditors"], 0) with data.sqlgate.nats.allow as true
}
