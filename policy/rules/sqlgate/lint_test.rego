package sqlgate.lint_test

import data.sqlgate.lint

test_demo_configuration_is_clean if {
	lint.problems == set()
}

test_problems if {
	cfg := {
		"routes": {
			"a.b": {
				"groups": "sales",
				"buisness_hours": true,
				"mfa": "yes",
				"max_rows": -1,
				"timeout_ms": 1.5,
				"max_auth_age": "soon",
				"redact_params": [1],
				"limits": [
					{"group": "s", "param": "amount", "max": "10"},
					{"group": "s", "param": "x", "min": 5, "max": 1},
					3,
					{"group": "s"},
					{"param": "y", "max": 1, "maxx": 2},
				],
			},
			"c.d": {"business_hours": true, "break_glass": true},
			"e.f": [],
		},
		"deny": [{"principal": ["x"], "routes": "a.b", "reason": 5}],
		"nats": {"ttl": "forever", "x": 1},
		"sql_credentials": [{"database": "d", "roles": "r", "max_ttl": "1x", "y": 1}],
		"extra": 1,
	}
	lint.problems == {
		"config: unknown key \"extra\"",
		"routes.a.b: unknown key \"buisness_hours\"",
		"routes.a.b.groups: must be a list of strings",
		"routes.a.b.redact_params: must be a list of strings",
		"routes.a.b.mfa: must be true or false",
		"routes.a.b.max_rows: must be a whole number from 0 to 2147483647",
		"routes.a.b.timeout_ms: must be a whole number from 0 to 2147483647",
		"routes.a.b.max_auth_age: must be a positive duration such as \"1h\"",
		"routes.a.b.limits[0]: max must be a number",
		"routes.a.b.limits[1]: min is larger than max",
		"routes.a.b.limits[2]: must be an object",
		"routes.a.b.limits[3]: needs min or max",
		"routes.a.b.limits[3]: param must be a string",
		"routes.a.b.limits[4]: needs a group or a role",
		"routes.a.b.limits[4]: unknown key \"maxx\"",
		"routes.c.d: business_hours needs config.business_hours",
		"routes.c.d: break_glass needs config.break_glass",
		"routes.e.f: must be an object",
		"deny[0]: unknown key \"principal\"",
		"deny[0].routes: must be a list of strings",
		"deny[0].reason: must be a string",
		"nats: unknown key \"x\"",
		"nats.ttl: must be a positive duration such as \"15m\"",
		"sql_credentials[0]: unknown key \"y\"",
		"sql_credentials[0].group: must be a string",
		"sql_credentials[0].roles: must be a list of strings",
		"sql_credentials[0].max_ttl: must be a positive duration such as \"1h\"",
	} with data.sqlgate.config as cfg
}

test_business_hours_and_break_glass_problems if {
	cfg := {
		"business_hours": {"timezone": "Mars/Olympus", "days": ["Mon"], "start": "8am", "end": "18:00", "x": 1},
		"break_glass": {"group": 1, "min_reason_length": "ten"},
	}
	lint.problems == {
		"business_hours: unknown key \"x\"",
		"business_hours.timezone: must be an IANA time zone such as \"Europe/Berlin\"",
		"business_hours.days: must be a list of weekday names such as Monday",
		"business_hours.start: must be a time such as \"08:00\"",
		"break_glass.group: must be a group name",
		"break_glass.min_reason_length: must be a whole number of at least 0",
	} with data.sqlgate.config as cfg
}

test_hours_in_order if {
	lint.problems == {"business_hours: start must be before end"} with data.sqlgate.config as {"business_hours": {
		"timezone": "UTC", "days": ["Monday"], "start": "18:00", "end": "08:00",
	}}
}

test_missing_required_keys if {
	lint.problems == {
		"business_hours.timezone: must be an IANA time zone such as \"Europe/Berlin\"",
		"business_hours.days: must be a list of weekday names such as Monday",
		"business_hours.start: must be a time such as \"08:00\"",
		"business_hours.end: must be a time such as \"08:00\"",
		"break_glass.group: must be a group name",
		"break_glass.min_reason_length: must be a whole number of at least 0",
		"nats.ttl: must be a positive duration such as \"15m\"",
	} with data.sqlgate.config as {"business_hours": {}, "break_glass": {}, "nats": {}}
}

test_wrong_shapes if {
	lint.problems == {
		"config.routes: must be an object keyed by route subject",
		"deny: must be a list",
		"sql_credentials: must be a list",
		"break_glass: unknown key \"groups\"",
		"break_glass.group: must be a group name",
	} with data.sqlgate.config as {
		"routes": ["a.b"],
		"deny": {"principals": ["x"]},
		"sql_credentials": {"group": "g"},
		"break_glass": {"groups": ["bg"], "min_reason_length": 1},
	}
	lint.problems == {"routes.a.b.limits: must be a list"} with data.sqlgate.config as {"routes": {"a.b": {"limits": {"group": "g"}}}}
}

# Every list element and section must be an object: a deny entry written as a
# bare e-mail address matched no one, and the listed account was allowed.
test_entries_and_sections_must_be_objects if {
	lint.problems == {
		"deny[0]: must be an object",
		"deny[2]: must be an object",
		"sql_credentials[1]: must be an object",
		"business_hours: must be an object",
		"break_glass: must be an object",
		"nats: must be an object",
	} with data.sqlgate.config as {
		"deny": ["mallory@example.com", {"principals": ["u-eve"]}, ["x"]],
		"sql_credentials": [{"group": "g", "database": "d", "roles": ["r"], "max_ttl": "1h"}, "sales"],
		"business_hours": "weekdays",
		"break_glass": "break-glass",
		"nats": "15m",
	}
}

test_demo_with_a_bare_deny_entry_is_refused if {
	cfg := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": ["mallory@example.com"]}])
	lint.problems == {"deny[0]: must be an object"} with data.sqlgate.config as cfg
}

# The configuration of the tests below, their own: they keep passing
# whatever a team's data.yaml holds.
_orders_config := {"routes": {
	"orders.v1.create": {
		"groups": ["sales"],
		"roles": ["orders.writer"],
		"limits": [
			{"group": "sales", "param": "amount", "min": 0, "max": 1000},
			{"role": "orders.writer", "param": "amount", "min": 0, "max": 1000},
		],
	},
	"orders.v1.get": {"groups": ["sales", "support"], "roles": ["orders.writer"]},
}}

test_orders_config_is_clean if {
	lint.problems == set() with data.sqlgate.config as _orders_config
}

# A limit of a group the route does not grant is never enforced.
test_limit_group_must_be_one_of_the_route_groups if {
	cfg := json.patch(_orders_config, [{"op": "replace", "path": "/routes/orders.v1.create/limits/0/group", "value": "Sales"}])
	lint.problems == {"routes.orders.v1.create.limits[0].group: Sales is not in the route's groups (sales)"} with data.sqlgate.config as cfg
	lint.problems == {"routes.a.b.limits[0].group: sales is not in the route's groups (none)"} with data.sqlgate.config as {"routes": {"a.b": {
		"break_glass": false,
		"limits": [{"group": "sales", "param": "amount", "max": 1}],
	}}}
}

# Obligations the engine would refuse on every decision are refused here.
test_obligations_within_the_engine_bounds if {
	lint.problems == {
		"routes.a.b.max_rows: must be a whole number from 0 to 2147483647",
		"routes.a.b.timeout_ms: must be a whole number from 0 to 2147483647",
		"nats.ttl: must be at most 8784h (366 days)",
		"sql_credentials[0].max_ttl: must be at most 8784h (366 days)",
	} with data.sqlgate.config as {
		"routes": {"a.b": {"max_rows": 3000000000, "timeout_ms": 2147483648}},
		"nats": {"ttl": "8785h"},
		"sql_credentials": [{"group": "g", "database": "d", "roles": ["r"], "max_ttl": "10000h"}],
	}
	lint.problems == set() with data.sqlgate.config as {
		"routes": {"a.b": {"max_rows": 2147483647, "timeout_ms": 2147483647}},
		"nats": {"ttl": "8784h"},
		"sql_credentials": [{"group": "g", "database": "d", "roles": ["r"], "max_ttl": "8784h"}],
	}
}

test_role_grants_and_limits if {
	lint.problems == set() with data.sqlgate.config as {"routes": {"a.b": {
		"roles": ["svc.writer"],
		"limits": [{"role": "svc.writer", "param": "amount", "max": 1}],
	}}}
	lint.problems == {
		"routes.a.b.roles: must be a list of strings",
		"routes.a.b.limits[0]: names both a group and a role: a limit applies to one of them",
		"routes.a.b.limits[1]: needs a group or a role",
		"routes.a.b.limits[2]: role must be a string",
		"routes.a.b.limits[3]: group must be a string",
		"routes.a.b.limits[4]: unknown key \"roles\"",
		"routes.a.b.limits[4]: needs a group or a role",
	} with data.sqlgate.config as {"routes": {"a.b": {
		"groups": ["g"],
		"roles": "svc.writer",
		"limits": [
			{"group": "g", "role": "svc.writer", "param": "amount", "max": 1},
			{"param": "amount", "max": 1},
			{"role": ["svc.writer"], "param": "amount", "max": 1},
			{"group": 5, "param": "amount", "max": 1},
			{"roles": ["svc.writer"], "param": "amount", "max": 1},
		],
	}}}
}

# A limit of a role the route does not grant is never enforced, and neither
# is a role's limit written under group (or the other way round).
test_limit_role_must_be_one_of_the_route_roles if {
	cfg := json.patch(_orders_config, [{"op": "replace", "path": "/routes/orders.v1.create/limits/1/role", "value": "Orders.Writer"}])
	lint.problems == {"routes.orders.v1.create.limits[1].role: Orders.Writer is not in the route's roles (orders.writer)"} with data.sqlgate.config as cfg
	swapped := json.patch(_orders_config, [
		{"op": "remove", "path": "/routes/orders.v1.create/limits/1/role"},
		{"op": "add", "path": "/routes/orders.v1.create/limits/1/group", "value": "orders.writer"},
	])
	lint.problems == {"routes.orders.v1.create.limits[1].group: orders.writer is not in the route's groups (sales)"} with data.sqlgate.config as swapped
	lint.problems == {"routes.a.b.limits[0].role: r is not in the route's roles (none)"} with data.sqlgate.config as {"routes": {"a.b": {
		"groups": ["r"],
		"limits": [{"role": "r", "param": "amount", "max": 1}],
	}}}
}

# A deny entry on a route the configuration does not list refuses nothing:
# a misspelt route left the route it meant open.
test_deny_routes_must_be_configured_routes if {
	cfg := json.patch(_orders_config, [{"op": "add", "path": "/deny", "value": [
		{"principals": ["u-mallory"], "routes": ["orders.v1.get", "orders.v1.craete"]},
		{"groups": ["support"], "routes": []},
	]}])
	lint.problems == {
		"deny[0].routes[1]: orders.v1.craete is not a route of config.routes: a deny entry names listed routes (list a route your own rules grant there too)",
		"deny[1].routes: is empty, so the entry refuses nothing: list routes, or leave routes out to refuse everything",
	} with data.sqlgate.config as cfg
	lint.problems == set() with data.sqlgate.config as json.patch(_orders_config, [{"op": "add", "path": "/deny", "value": [
		{"principals": ["u-mallory"], "routes": ["orders.v1.create"]},
		{"principals": ["https://idp.example.com u-eve"]},
	]}])
}

# Event grants: an object keyed by emit subject, each granting groups or roles.
test_events_problems if {
	lint.problems == set() with data.sqlgate.config as {"events": {"a.created": {"groups": ["g"], "roles": ["r"]}, "a.cancelled": {}}}
	lint.problems == {"config.events: must be an object keyed by emit subject"} with data.sqlgate.config as {"events": ["a.created"]}
	lint.problems == {
		"events.a.created: unknown key \"group\"",
		"events.a.created.roles: must be a list of strings",
		"events.a.cancelled: must be an object",
		"events.a.*: must be one emit subject, without wildcards or spaces",
		"events.a.>: must be one emit subject, without wildcards or spaces",
		"events.a..b: must be one emit subject, without wildcards or spaces",
		"events.a b: must be one emit subject, without wildcards or spaces",
	} with data.sqlgate.config as {"events": {
		"a.created": {"group": ["g"], "roles": "r"},
		"a.cancelled": ["g"],
		"a.*": {"groups": ["g"]},
		"a.>": {"groups": ["g"]},
		"a..b": {"groups": ["g"]},
		"a b": {"groups": ["g"]},
	}}
}

# Deny-list principals are subjects: an e-mail address can be changed by the
# user or an administrator (preferred_username, upn, an unverified email), and
# a renamed account would leave the list.
test_deny_principals_must_not_be_email_addresses if {
	lint.problems == {
		"deny[0].principals[1]: mallory@example.com looks like an e-mail address, which the user or an administrator can change: list the principal's subject (or \"<issuer> <subject>\") as sqlgate whoami shows it",
		"deny[1].principals[0]: Eve@Example.COM looks like an e-mail address, which the user or an administrator can change: list the principal's subject (or \"<issuer> <subject>\") as sqlgate whoami shows it",
	} with data.sqlgate.config as {"deny": [
		{"principals": ["u-mallory", "mallory@example.com"], "reason": "account under investigation"},
		{"principals": ["Eve@Example.COM"]},
		{"principals": ["u-eve", "https://idp.example.com pat@example.com"]},
	]}
}
