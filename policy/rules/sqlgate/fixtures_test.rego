# METADATA
# description: Input builders shared by the tests.
package sqlgate.fixtures_test

# monday_10 is Monday 2026-01-05 10:00 UTC in Unix nanoseconds.
monday_10 := 1767607200000000000

# principal(groups) is a signed-in person in groups, with MFA, who signed in
# an hour before monday_10.
principal(groups) := {
	"issuer": "https://idp.example.com",
	"subject": "u-1",
	"email": "pat@example.com",
	"groups": groups,
	"roles": [],
	"mfa": true,
	"service": false,
	"auth_time": 1767603600,
}

# request(ns) is a NATS request at ns (Unix nanoseconds).
request(ns) := {
	"correlation_id": "0194a3b2-0000-7000-8000-000000000001",
	"time_ns": ns,
	"transport": "nats",
	"client": {},
}

# call(groups, route, params) is a call decision input at monday_10.
call(groups, route, params) := {
	"principal": principal(groups),
	"route": {
		"subject": route,
		"kind": "statement",
		"target": "orders",
		"database": "orders",
		"mode": "sync",
		"tags": [],
	},
	"params": params,
	"request": request(monday_10),
}

# credential(groups, cred) is a credential decision input.
credential(groups, cred) := {
	"principal": principal(groups),
	"credential": cred,
}

# service(roles) is a service signed in with client credentials, holding the
# application roles and no group: no e-mail, no MFA, no interactive sign-in.
service(roles) := {
	"issuer": "https://idp.example.com",
	"subject": "orders-service",
	"groups": [],
	"roles": roles,
	"mfa": false,
	"service": true,
	"auth_time": 0,
}

# service_call(roles, route, params) is a call by service(roles) at monday_10.
service_call(roles, route, params) := json.patch(call([], route, params), [{"op": "replace", "path": "/principal", "value": service(roles)}])

# service_credential(roles, cred) is a credential decision input for
# service(roles).
service_credential(roles, cred) := {
	"principal": service(roles),
	"credential": cred,
}
