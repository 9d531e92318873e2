package opa_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// ExampleEngine_Decide decides two calls with the default library (the
// dev-mode demo policy): a sales user creating an order within the amount
// limit, and one over it.
func ExampleEngine_Decide() {
	ctx := context.Background()
	engine, err := opa.Open(ctx, opa.Config{FS: rules.FS})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer engine.Close()

	call := func(amount string) *policy.Input {
		return &policy.Input{
			Principal: policy.Principal{
				Issuer: "https://idp.example.com", Subject: "alice", Email: "alice@example.com",
				Groups: []string{"sales"}, Roles: []string{}, MFA: true,
			},
			Route: &policy.Route{
				Subject: "orders.v1.create", Kind: "statement", Target: "create_order",
				Database: "orders", Mode: "sync", Tags: []string{},
			},
			Params: map[string]any{"customer": "ACME", "amount": json.Number(amount), "note": "rush"},
		}
	}
	for _, amount := range []string{"750", "5000"} {
		d, err := engine.Decide(ctx, policy.Call, call(amount))
		if errors.Is(err, policy.ErrEvaluation) {
			fmt.Println("the policy could not decide:", err) // d is a deny
		}
		fmt.Printf("amount %s: allow=%v reasons=%q redact=%v\n", amount, d.Allow, d.Reasons, d.Obligations.RedactParams)
	}
	// Output:
	// amount 750: allow=true reasons=[] redact=[note]
	// amount 5000: allow=false reasons=["amount exceeds the sales limit of 1000"] redact=[note]
}
