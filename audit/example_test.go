package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// Example appends an intent and its outcome, exports the log as a bundle and
// verifies the bundle offline with the public key only.
func Example() {
	ctx := context.Background()
	const origin = "sqlgate.example/instance-1"
	// In production the private key comes from a file and the store is
	// audit/sqlstore over the control database.
	skey, vkey, err := audit.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), origin)
	if err != nil {
		panic(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	store := audittest.NewStore()
	log, err := audit.Open(ctx, store, audit.Config{
		Origin:   origin,
		Instance: "host-1",
		Signer:   signer,
		ParamKey: audit.ParamKey{ID: "2026-01", Secret: []byte("example-only-secret-0123456789ab")},
	})
	if err != nil {
		panic(err)
	}

	intent := &audit.Record{
		Kind:          audit.KindIntent,
		CorrelationID: "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0c",
		Actor:         &audit.Actor{Issuer: "https://idp.example", Subject: "alice", MFA: true},
		Route:         "orders.v1.create",
		Params:        log.HashParams(map[string]any{"amount": 10, "card": "4111-1111"}, []string{"card"}),
	}
	i, err := log.Append(ctx, intent) // durable when it returns
	if err != nil {
		panic(err) // fail closed: do not run the call
	}
	_, err = log.Append(ctx, &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: intent.CorrelationID, IntentIndex: i, Route: intent.Route,
		SQL: &audit.SQL{Outcome: "commit", Rows: 1}, Result: &audit.Result{Status: "ok"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("intent index:", i, "card:", intent.Params["card"])
	if err := log.Close(ctx); err != nil { // writes the final checkpoint
		panic(err)
	}

	var bundle bytes.Buffer
	if err := audit.WriteBundle(ctx, &bundle, store, audit.BundleOptions{}); err != nil {
		panic(err)
	}
	src, err := audit.OpenBundle(bytes.NewReader(bundle.Bytes()))
	if err != nil {
		panic(err)
	}
	report, err := audit.Verify(ctx, src, audit.VerifyOptions{Keys: []string{vkey}})
	if err != nil {
		panic(err)
	}
	fmt.Println("ok:", report.OK(), "records:", report.Records, "unpaired:", report.Origins[0].Unpaired)
	if !report.OK() {
		_ = report.WriteText(os.Stdout)
	}
	// Output:
	// intent index: 1 card: redacted
	// ok: true records: 3 unpaired: 0
}
