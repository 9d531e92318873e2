package sqlgate.lib.effective_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.effective
import data.sqlgate.nats

_with_deny(entries) := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": entries}])

_nats(groups) := fx.credential(groups, {"type": "nats", "ttl": 0})

test_library_decisions if {
	effective.call_allowed with input as fx.call(["sales"], "orders.v1.get", {"id": 1})
	not effective.call_allowed with input as fx.call(["support"], "orders.v1.cancel", {"id": 1})
	effective.nats_allowed with input as _nats(["support"])
	effective.nats_pub == {"orders.v1.get"} with input as _nats(["support"])
	not effective.nats_allowed with input as _nats(["auditors"])
	effective.sql_credentials_allowed with input as fx.credential(["sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
}

# A rule of a policy's own (mocked) that allows a deny-listed principal makes
# allow true, but the engine refuses the call: deny holds the entry's reason.
test_custom_allow_of_a_deny_listed_principal if {
	cfg := _with_deny([{"principals": ["u-1"], "routes": ["orders.v1.get"], "reason": "frozen"}])
	req := fx.call(["support"], "orders.v1.get", {"id": 1})
	call.allow with input as req with data.sqlgate.config as cfg with data.sqlgate.call.allow as true
	not effective.call_allowed with input as req with data.sqlgate.config as cfg with data.sqlgate.call.allow as true
	effective.call_allowed with input as fx.call(["support"], "orders.v1.get", {"id": 1}) with data.sqlgate.call.allow as true
}

# A route a policy's own pub rule adds (mocked) is in pub, but not in the
# credential when the deny list refuses it; an entry without routes refuses
# the whole credential.
test_custom_pub_of_a_deny_listed_principal if {
	scoped := _with_deny([{"principals": ["u-1"], "routes": ["orders.v1.cancel"]}])
	nats.pub == {"orders.v1.get", "orders.v1.cancel"} with input as _nats(["support"]) with data.sqlgate.config as scoped
		with data.sqlgate.nats.pub as {"orders.v1.get", "orders.v1.cancel"}
	effective.nats_pub == {"orders.v1.get"} with input as _nats(["support"]) with data.sqlgate.config as scoped
		with data.sqlgate.nats.pub as {"orders.v1.get", "orders.v1.cancel"}
	effective.nats_allowed with input as _nats(["support"]) with data.sqlgate.config as scoped
		with data.sqlgate.nats.pub as {"orders.v1.get", "orders.v1.cancel"}

	out := _with_deny([{"principals": ["u-1"]}])
	not effective.nats_allowed with input as _nats(["support"]) with data.sqlgate.config as out
		with data.sqlgate.nats.allow as true
	not effective.sql_credentials_allowed with input as fx.credential(["sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
		with data.sqlgate.config as out with data.sqlgate.sql_credentials.allow as true
}

# deny_pub holds patterns, as a NATS permission does; a credential left with
# nothing to publish and no event to follow is refused.
test_deny_pub_patterns if {
	effective.nats_pub == {"reports.daily"} with input as _nats(["support"])
		with data.sqlgate.nats.pub as {"orders.v1.get", "orders.v1.cancel", "reports.daily"}
		with data.sqlgate.nats.deny_pub as {"orders.>"}
	not effective.nats_allowed with input as _nats(["support"]) with data.sqlgate.nats.deny_pub as {"orders.*.get"}
	effective.nats_allowed with input as _nats(["sales"]) with data.sqlgate.nats.deny_pub as {">"}
	effective.nats_pub == set() with input as _nats(["sales"]) with data.sqlgate.nats.deny_pub as {">"}
}

test_subject_matches if {
	every pattern_subject in [
		["orders.v1.get", "orders.v1.get"],
		["orders.*.get", "orders.v1.get"],
		["*.*.*", "orders.v1.get"],
		["orders.>", "orders.v1.get"],
		["orders.>", "orders.v1"],
		["orders.>", "orders."],
		[">", "orders"],
		["a..b", "a..b"],
		["*", ""],
	] {
		effective.subject_matches(pattern_subject[0], pattern_subject[1])
	}
	every pattern_subject in [
		["orders.v1.get", "orders.v1.gett"],
		["orders.*", "orders.v1.get"],
		["orders.>", "orders"],
		["orders.>.get", "orders.v1.get"],
		["*", "orders.v1"],
		["orders.v1.get.>", "orders.v1.get"],
	] {
		not effective.subject_matches(pattern_subject[0], pattern_subject[1])
	}
}

# A deny that is not a set, even an empty one, is a malformed decision: the
# engine refuses it.
test_deny_that_is_not_a_set if {
	not effective.call_allowed with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.call.deny as []
	not effective.nats_allowed with input as _nats(["sales"]) with data.sqlgate.nats.deny as []
	not effective.sql_credentials_allowed with input as fx.credential(["sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
		with data.sqlgate.sql_credentials.deny as []
}
