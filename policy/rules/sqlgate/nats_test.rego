# METADATA
# description: Tests of data.sqlgate.nats with the demo configuration.
package sqlgate.nats_test

import data.sqlgate.fixtures_test as fx
import data.sqlgate.nats

test_sales_may_publish_their_routes if {
	req := fx.credential(["sales"], {"type": "nats", "ttl": 0})
	nats.allow with input as req
	nats.pub == {"orders.v1.create", "orders.v1.get", "orders.v1.cancel"} with input as req
	nats.ttl == 900 with input as req
}

test_support_may_publish_get_only if {
	nats.pub == {"orders.v1.get"} with input as fx.credential(["support"], {"type": "nats", "ttl": 0})
}

test_auditors_get_no_credential if {
	req := fx.credential(["auditors"], {"type": "nats", "ttl": 0})
	not nats.allow with input as req
	nats.reasons == {"no route is granted to any of your groups (auditors)"} with input as req
}

test_shorter_ttl_is_honoured if {
	nats.ttl == 300 with input as fx.credential(["sales"], {"type": "nats", "ttl": 300})
}

test_longer_ttl_is_capped if {
	nats.ttl == 900 with input as fx.credential(["sales"], {"type": "nats", "ttl": 86400})
}

test_break_glass_members_may_publish_break_glass_routes if {
	nats.pub == {"orders.v1.get", "orders.v1.cancel"} with input as fx.credential(["break-glass"], {"type": "nats", "ttl": 0})
}

test_deny_list_removes_routes if {
	cfg := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": [{"groups": ["sales"], "routes": ["orders.v1.cancel"], "reason": "frozen"}]}])
	nats.pub == {"orders.v1.create", "orders.v1.get"} with input as fx.credential(["sales"], {"type": "nats", "ttl": 0})
		with data.sqlgate.config as cfg
}
