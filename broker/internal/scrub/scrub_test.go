package scrub_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/scrub"
	"github.com/sqlgate/sqlgate/broker/route"
)

func TestMessage(t *testing.T) {
	t.Parallel()
	r := &route.Route{Subject: "x"}
	c := &broker.Call{Route: r, CorrelationID: "corr-123", Principal: "alice@example.com", Params: map[string]any{
		"email": "bob@example.com", "n": int64(7), "amount": json.Number("12.50"), "none": nil,
	}}
	tests := []struct{ in, want string }{
		{`UNIQUE constraint failed: users.email`, `UNIQUE constraint failed: users.email`},
		{`duplicate bob@example.com for alice@example.com`, `duplicate [redacted] for [redacted]`},
		{`value 7 in column x7 (code 7)`, `value [redacted] in column x7 (code [redacted])`},
		{`amount 12.50 too large`, `amount [redacted] too large`},
		{`correlation corr-123`, `correlation [redacted]`},
		{strings.Repeat("x", 600), strings.Repeat("x", 512) + "…"},
	}
	for _, tc := range tests {
		if got := scrub.Message(tc.in, c); got != tc.want {
			t.Errorf("scrub.Message(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzMessage(f *testing.F) {
	for _, s := range []string{"duplicate bob@example.com", "7 x7 77", "", "\xff\xfe"} {
		f.Add(s, "bob@example.com", "7")
	}
	f.Fuzz(func(t *testing.T, msg, secret, short string) {
		c := &broker.Call{Params: map[string]any{"a": secret, "b": short}}
		got := scrub.Message(msg, c)
		if s := strings.TrimSpace(secret); len(s) >= 3 && strings.Contains(got, s) && !strings.Contains("[redacted]…", s) {
			t.Fatalf("Message(%q) = %q still contains %q", msg, got, s)
		}
	})
}
