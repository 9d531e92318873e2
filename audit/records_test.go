package audit

import (
	"time"
)

var testTime = time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)

// sampleRecords returns one record of every kind, fully stamped.
func sampleRecords() []*Record {
	allow, deny := true, false
	actor := &Actor{
		Issuer: "https://login.microsoftonline.com/tenant/v2.0", Subject: "alice-subject-123",
		ObjectID: "00000000-0000-0000-0000-000000000001", Email: "alice@example.com", MFA: true,
		NATSUserKey: "UABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV", Transport: "nats",
		ClientHost: "10.0.0.7", Tenant: "tenant",
	}
	base := func(i int64, k Kind) Record {
		return Record{
			V: 1, Index: i, Kind: k, Time: testTime.Add(time.Duration(i) * time.Millisecond),
			Origin: "sqlgate.example/instance-1", Instance: "host-1",
		}
	}
	intent := base(1, KindIntent)
	intent.CorrelationID = "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0c"
	intent.Actor = actor
	intent.DecisionID = "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0d"
	intent.Entry = "call"
	intent.PolicyRevision = "3f2a9c4e8b1d7f6a5e4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e"
	intent.Allow = &allow
	intent.Reasons = []string{"sales may create orders up to 1000"}
	intent.InputSHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	intent.Route = "orders.v1.create"
	intent.TargetKind = "statement"
	intent.Target = "orders_create"
	intent.Params = map[string]string{"customer": "hmac-sha256:k1:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", "amount": "hmac-sha256:k1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "note": "redacted"}
	intent.IdempotencyKey = "idem-1"

	outcome := base(2, KindOutcome)
	outcome.CorrelationID = intent.CorrelationID
	outcome.IntentIndex = 1
	outcome.Actor = actor
	outcome.Route = intent.Route
	outcome.SQL = &SQL{Server: "sql1", Database: "orders", TransactionID: "123456", Outcome: "commit", Rows: 1, RowsAffected: 1}
	outcome.Result = &Result{Status: "ok", DurationUS: 1834}

	recovered := base(3, KindOutcome)
	recovered.IntentIndex = 1
	recovered.SQL = &SQL{Outcome: "rollback", ErrorNumber: 2627}
	recovered.Result = &Result{Status: "db_error", Recovered: true, Replayed: true}

	decision := base(4, KindDecision)
	decision.Actor = &Actor{Issuer: "https://idp.example", Subject: "bob", Transport: "http"}
	decision.Entry = "call"
	decision.Allow = &deny
	decision.Reasons = []string{"support may only read", "line\nbreak \"quoted\" \\ tab\t ctrl\x01 é 東京 \u2028"}
	decision.Route = "orders.v1.cancel"

	cred := base(5, KindCredential)
	cred.Actor = &Actor{Subject: "carol", SQLLogin: "sg_carol_ab12"}
	cred.Credential = &Credential{
		Type: "sql", Action: "issue", LeaseID: "lease-1", Login: "sg_carol_ab12",
		Database: "orders", Role: "reader", Via: "api", ExpiresAt: testTime.Add(time.Hour), Detail: "ttl 1h",
	}

	admin := base(6, KindAdmin)
	admin.Admin = &Admin{Action: "policy_load", Detail: "revision 3f2a"}

	hb := base(7, KindHeartbeat)
	hb.Instance = ""

	// A decision with its input's keyed hash (records before input_hmac,
	// like the intent above, carry input_sha256).
	keyed := base(8, KindDecision)
	keyed.Actor = &Actor{Issuer: "https://idp.example", Subject: "dave", Transport: "nats"}
	keyed.DecisionID = "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0e"
	keyed.Entry = "call"
	keyed.Allow = &deny
	keyed.InputHMAC = "hmac-sha256:k1:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	keyed.Route = "orders.v1.create"

	return []*Record{&intent, &outcome, &recovered, &decision, &cred, &admin, &hb, &keyed}
}
