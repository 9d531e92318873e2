# METADATA
# description: Tests of data.sqlgate.sql_credentials with the demo configuration.
package sqlgate.sql_credentials_test

import data.sqlgate.fixtures_test as fx
import data.sqlgate.sql_credentials as sql

test_sales_reader_up_to_an_hour if {
	req := fx.credential(["sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
	sql.allow with input as req
	sql.ttl == 3600 with input as req
}

test_ttl_is_the_granted_maximum_whatever_is_requested if {
	sql.ttl == 3600 with input as fx.credential(["sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 600})
	sql.ttl == 3600 with input as fx.credential(["sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 7200})
}

test_support_reader_half_an_hour if {
	req := fx.credential(["support"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
	sql.allow with input as req
	sql.ttl == 1800 with input as req
}

test_longest_grant_wins if {
	sql.ttl == 3600 with input as fx.credential(["support", "sales"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
}

test_other_role_is_denied if {
	req := fx.credential(["support"], {"type": "sql", "database": "orders", "role": "writer", "ttl": 0})
	not sql.allow with input as req
	sql.reasons == {"role writer on database orders is not granted to any of your groups (support)"} with input as req
}

test_other_database_is_denied if {
	not sql.allow with input as fx.credential(["sales"], {"type": "sql", "database": "billing", "role": "reader", "ttl": 0})
}

test_auditors_get_no_login if {
	not sql.allow with input as fx.credential(["auditors"], {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})
}

_reader(groups) := fx.credential(groups, {"type": "sql", "database": "orders", "role": "reader", "ttl": 0})

_with_deny(entries) := json.patch(data.sqlgate.config, [{"op": "replace", "path": "/deny", "value": entries}])

# A deny-list entry without routes refuses SQL logins too (issue and renew
# are both decided here).
test_deny_listed_principal_gets_no_login if {
	cfg := _with_deny([{"principals": ["u-1"], "reason": "account under investigation"}])
	not sql.allow with input as _reader(["sales"]) with data.sqlgate.config as cfg
	sql.reasons == {"account under investigation"} with input as _reader(["sales"]) with data.sqlgate.config as cfg
}

# deny holds the refusal whatever allows the login, here an allow rule a
# policy adds (mocked true): the engine denies with deny's messages.
test_deny_list_beats_custom_grant if {
	cfg := _with_deny([{"principals": ["u-1"], "reason": "account under investigation"}])
	sql.deny == {"account under investigation"} with input as _reader(["auditors"]) with data.sqlgate.config as cfg
		with data.sqlgate.sql_credentials.allow as true
	sql.deny == set() with input as _reader(["sales"])
}

# A login allowed by a rule a policy adds (allow mocked true) is not
# explained as refused in its audit record.
test_custom_allow_is_not_explained_as_refused if {
	sql.reasons == set() with input as _reader(["auditors"]) with data.sqlgate.sql_credentials.allow as true
}

test_deny_listed_group_gets_no_login if {
	cfg := _with_deny([{"groups": ["support"]}])
	not sql.allow with input as _reader(["sales", "support"]) with data.sqlgate.config as cfg
	sql.reasons == {"denied by the deny list"} with input as _reader(["sales", "support"]) with data.sqlgate.config as cfg
	sql.allow with input as _reader(["sales"]) with data.sqlgate.config as cfg
}

test_malformed_deny_entry_refuses_logins if {
	cfg := _with_deny(["mallory@example.com"])
	not sql.allow with input as _reader(["sales"]) with data.sqlgate.config as cfg
}

# An entry with routes restricts those routes only.
test_route_deny_entry_leaves_logins if {
	cfg := _with_deny([{"principals": ["u-1"], "routes": ["orders.v1.cancel"]}])
	sql.allow with input as _reader(["sales"]) with data.sqlgate.config as cfg
	sql.reasons == set() with input as _reader(["sales"]) with data.sqlgate.config as cfg
}
