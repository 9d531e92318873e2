package sqlgate.lib.denylist_test

import data.sqlgate.call
import data.sqlgate.fixtures_test as fx
import data.sqlgate.lib.denylist

_routes := {
	"orders.v1.create": {"groups": ["sales"]},
	"orders.v1.get": {"groups": ["sales"], "break_glass": true},
}

_with_deny(entries) := {"routes": _routes, "deny": entries}

test_by_subject if {
	cfg := _with_deny([{"principals": ["u-1"], "reason": "account under review"}])
	req := fx.call(["sales"], "orders.v1.get", {"id": 1})
	not call.allow with input as req with data.sqlgate.config as cfg
	call.reasons == {"account under review"} with input as req with data.sqlgate.config as cfg
}

# The subject is stable; the e-mail (preferred_username, upn, an unverified
# email claim) is not: a denied person whose e-mail changed, or whose token
# has none, is still denied.
test_by_subject_whatever_the_email if {
	cfg := _with_deny([{"principals": ["u-1"], "reason": "account under review"}])
	every req in [
		fx.call(["sales"], "orders.v1.get", {"id": 1}),
		_renamed(fx.call(["sales"], "orders.v1.get", {"id": 1}), "pat.renamed@example.com"),
		json.remove(fx.call(["sales"], "orders.v1.get", {"id": 1}), ["principal/email"]),
	] {
		not call.allow with input as req with data.sqlgate.config as cfg
		call.reasons == {"account under review"} with input as req with data.sqlgate.config as cfg
		denylist.excluded with input as req with data.sqlgate.config as cfg
	}
}

_renamed(req, email) := json.patch(req, [{"op": "replace", "path": "/principal/email", "value": email}])

# "<issuer> <subject>" names the subject of one issuer only.
test_by_issuer_and_subject if {
	req := fx.call(["sales"], "orders.v1.get", {"id": 1})
	not call.allow with input as req with data.sqlgate.config as _with_deny([{"principals": ["https://idp.example.com u-1"]}])
	not call.allow with input as _renamed(req, "someone@example.com") with data.sqlgate.config as _with_deny([{"principals": ["https://idp.example.com u-1"]}])
	call.allow with input as req with data.sqlgate.config as _with_deny([{"principals": ["https://other.example.com u-1"]}])
	call.allow with input as req with data.sqlgate.config as _with_deny([{"principals": ["U-1"]}])
}

# An e-mail address names no principal: the entry (which lint refuses) fails
# closed and refuses everyone, on every route, rather than match an address
# its owner can change.
test_email_entries_match_no_one_and_refuse_everyone if {
	every entry in [
		{"principals": ["pat@example.com"], "routes": ["orders.v1.create"]},
		{"principals": ["u-1", "mallory@example.com"], "routes": ["orders.v1.create"]},
	] {
		every req in [
			fx.call(["sales"], "orders.v1.get", {"id": 1}),
			_renamed(fx.call(["sales"], "orders.v1.get", {"id": 1}), "mallory.renamed@example.com"),
			fx.service_call(["orders.writer"], "orders.v1.get", {"id": 1}),
		] {
			not call.allow with input as req with data.sqlgate.config as _with_deny([entry])
			denylist.excluded with input as req with data.sqlgate.config as _with_deny([entry])
		}
	}
	denylist.email_shaped("mallory@example.com")
	not denylist.email_shaped("u-1")
	not denylist.email_shaped("https://idp.example.com mallory@example.com")
}

# A subject that looks like an e-mail address is written "<issuer> <subject>".
test_email_shaped_subject_with_its_issuer if {
	req := json.patch(fx.call(["sales"], "orders.v1.get", {"id": 1}), [{"op": "replace", "path": "/principal/subject", "value": "pat@example.com"}])
	cfg := _with_deny([{"principals": ["https://idp.example.com pat@example.com"], "routes": ["orders.v1.get"]}])
	not call.allow with input as req with data.sqlgate.config as cfg
	call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
}

test_by_group_and_route if {
	cfg := _with_deny([{"groups": ["sales"], "routes": ["orders.v1.create"], "reason": "order entry frozen for the audit"}])
	not call.allow with input as fx.call(["sales"], "orders.v1.create", {"amount": 1}) with data.sqlgate.config as cfg
	call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
}

test_other_principals_unaffected if {
	cfg := _with_deny([{"principals": ["someone-else"]}, {"groups": ["support"]}])
	call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
}

test_entry_without_principals_matches_everyone if {
	cfg := _with_deny([{"routes": ["orders.v1.get"], "reason": "maintenance"}])
	not call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
	denylist.denied("orders.v1.get") with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
	not denylist.denied("orders.v1.create") with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
}

test_deny_list_beats_break_glass if {
	cfg := object.union(
		_with_deny([{"principals": ["u-1"], "reason": "account under review"}]),
		{"break_glass": {"group": "bg", "min_reason_length": 1}},
	)
	req := json.patch(fx.call(["bg"], "orders.v1.get", {"id": 1}), [{"op": "add", "path": "/request/reason", "value": "INC-9"}])
	not call.allow with input as req with data.sqlgate.config as cfg
	call.reasons == {"account under review"} with input as req with data.sqlgate.config as cfg
}

# An entry that lint refuses matches everyone on every route, so that a policy
# served without lint fails closed: a bare e-mail address (written without
# principals:) denies every call rather than none.
test_malformed_entries_deny_everyone if {
	every entries in [
		["mallory@example.com"],
		[{"principals": "mallory@example.com"}],
		[{"groups": "contractors", "reason": "r"}],
		[{"principals": ["someone-else"], "routes": "orders.v1.cancel"}],
		[{"principals": ["someone-else"]}, 42],
	] {
		not call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as _with_deny(entries)
		denylist.excluded with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as _with_deny(entries)
	}
	call.reasons == {"denied by the deny list"} with input as fx.call(["sales"], "orders.v1.get", {"id": 1})
		with data.sqlgate.config as _with_deny(["mallory@example.com"])
}

test_malformed_deny_list_denies_everyone if {
	cfg := _with_deny("mallory@example.com")
	not call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
	call.reasons == {"denied by the deny list"} with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as cfg
}

test_no_deny_list if {
	call.allow with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as {"routes": _routes}
	not denylist.excluded with input as fx.call(["sales"], "orders.v1.get", {"id": 1}) with data.sqlgate.config as {"routes": _routes}
}

# Only entries without routes exclude a principal from everything
# (credentials included).
test_excluded_only_by_entries_without_routes if {
	req := fx.call(["sales"], "orders.v1.get", {"id": 1})
	denylist.excluded with input as req with data.sqlgate.config as _with_deny([{"principals": ["u-1"]}])
	denylist.excluded with input as req with data.sqlgate.config as _with_deny([{"groups": ["sales"]}])
	denylist.excluded with input as req with data.sqlgate.config as _with_deny([{}])
	not denylist.excluded with input as req with data.sqlgate.config as _with_deny([{"principals": ["u-1"], "routes": ["orders.v1.get"]}])
	not denylist.excluded with input as req with data.sqlgate.config as _with_deny([{"principals": ["someone-else"]}])
}

_configs := [
	_with_deny([]),
	_with_deny([{"principals": ["u-1"]}]),
	_with_deny([{"principals": ["https://idp.example.com u-1"], "routes": ["orders.v1.get"]}]),
	_with_deny([{"principals": ["pat@example.com"], "routes": ["orders.v1.get"]}]),
	_with_deny([{"groups": ["sales"], "routes": ["orders.v1.create"]}]),
	_with_deny([{"routes": ["orders.v1.get"]}]),
	_with_deny([{"principals": ["someone-else"]}, "u-1"]),
	_with_deny({"principals": ["u-1"]}),
	_with_deny([{"principals": ["u-1"], "routes": ["orders.v1.unlisted", "orders.v1.get"]}]),
	_with_deny([{"principals": ["someone-else"], "routes": ["orders.v1.get"]}, {"groups": ["sales"], "routes": []}]),
]

test_denied_agrees_with_violations if {
	every cfg in _configs {
		every route in ["orders.v1.create", "orders.v1.get"] {
			_agree(route) with input as fx.call(["sales"], route, {}) with data.sqlgate.config as cfg
		}
	}
}

test_excluded_agrees_with_exclusions if {
	every cfg in _configs {
		_agree_excluded with input as fx.call(["sales"], "orders.v1.get", {}) with data.sqlgate.config as cfg
	}
}

# routes, built from the entries, holds the routes of config.routes that
# denied refuses, for every configuration.
test_routes_agrees_with_denied if {
	every cfg in _configs {
		_agree_routes with input as fx.call(["sales"], "orders.v1.get", {}) with data.sqlgate.config as cfg
	}
}

_agree_routes if {
	denylist.routes == {route | some route, _ in data.sqlgate.config.routes; denylist.denied(route)}
}

_agree(route) if {
	denied := count([1 | denylist.denied(route)]) > 0
	explained := count(denylist.violations(route)) > 0
	denied == explained
}

_agree_excluded if {
	excluded := count([1 | denylist.excluded]) > 0
	explained := count(denylist.exclusions) > 0
	excluded == explained
}
