package scrub_test

import (
	"encoding/json"
	"slices"
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

// A value inside or overlapping another is redacted with it, whatever the
// order the values come in (parameters are a map).
func TestRedactOverlap(t *testing.T) {
	t.Parallel()
	const secret = "alice@example.com card 4111111111111111"
	tests := []struct {
		name string
		msg  string
		vals []string
		want string
	}{
		{"inside", `invalid input syntax for type integer: "` + secret + `"`, []string{"alice@example.com", secret}, `invalid input syntax for type integer: "[redacted]"`},
		{"overlapping", "value alice@example.com card 4111 here", []string{"example.com card 4111", "alice@example.com"}, "value [redacted] here"},
		{"adjacent", "abcabc and abc", []string{"abc"}, "[redacted] and [redacted]"},
		{"short_in_long", "7 in x7 and 77", []string{"7", "x7 and 77"}, "[redacted] in [redacted]"},
		{"none", "nothing to hide", []string{"secret", "", "  "}, "nothing to hide"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev := slices.Clone(tc.vals)
			slices.Reverse(rev)
			for _, vals := range [][]string{tc.vals, rev} {
				if got := scrub.Redact(tc.msg, vals...); got != tc.want {
					t.Errorf("scrub.Redact(%q, %q) = %q, want %q", tc.msg, vals, got, tc.want)
				}
			}
		})
	}
	// Through Message: the principal inside a parameter value.
	c := &broker.Call{Principal: "alice@example.com", Params: map[string]any{"note": secret, "n": int64(7)}}
	for range 20 { // map order varies between runs
		got := scrub.Message(`bad value "`+secret+`"`, c)
		if got != `bad value "[redacted]"` {
			t.Fatalf("scrub.Message = %q, want the whole value redacted", got)
		}
	}
}

func FuzzMessage(f *testing.F) {
	for _, s := range []string{"duplicate bob@example.com", "7 x7 77", "", "\xff\xfe"} {
		f.Add(s, "bob@example.com", "7")
	}
	// A short value left in place (it is no whole word there) beside the
	// marker of the long one: "00" + "[redacted]" shows "00[", but not
	// the value "00[", which was replaced.
	f.Add("00", "[", "00")
	// shows reports whether got shows s other than as text of a marker
	// ("[redacted]", or the "…" of a cut message).
	shows := func(got, s string) bool {
		return strings.Contains(strings.ReplaceAll(got, "[redacted]", "\x00"), s) && !strings.Contains("…", s) && !strings.Contains(s, "\x00")
	}
	f.Fuzz(func(t *testing.T, msg, secret, short string) {
		c := &broker.Call{Params: map[string]any{"a": secret, "b": short}}
		got := scrub.Message(msg, c)
		if s := strings.TrimSpace(secret); len(s) >= 3 && shows(got, s) {
			t.Fatalf("Message(%q) = %q still contains %q", msg, got, s)
		}
		// A value inside another (the principal quoted in a parameter)
		// must not save part of the longer one from redaction.
		long := short + secret
		got = scrub.Redact(msg+long, short, long)
		if s := strings.TrimSpace(long); len(s) >= 3 && shows(got, s) {
			t.Fatalf("Redact(%q, %q, %q) = %q still contains %q", msg+long, short, long, got, s)
		}
	})
}
