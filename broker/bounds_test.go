package broker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/policy"
)

func TestCutUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abcd"},
		{"aéé", 4, "aé"},          // the cut falls before the é it would split
		{"a\xffb", 8, "a\uFFFDb"}, // an invalid byte is U+FFFD
		{"\xff\xff", 4, "\uFFFD"}, // ... and counts as its 3 bytes
		{"€€", 2, ""},
	} {
		if got := broker.CutUTF8(tc.in, tc.n); got != tc.want {
			t.Errorf("CutUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// storedRequest is the request part of a stored decision input.
type storedRequest struct {
	Request struct {
		Reason string        `json:"reason"`
		Client policy.Client `json:"client"`
	} `json:"request"`
	Credential *struct {
		Via string `json:"via"`
	} `json:"credential"`
}

// storedInputs returns every stored decision input by audit index.
func storedInputs(t *testing.T, e *env) map[int64]storedRequest {
	t.Helper()
	if err := e.svc.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := map[int64]storedRequest{}
	if err := e.log.Inputs(t.Context(), time.Time{}, func(r audit.Record, in []byte) error {
		var s storedRequest
		if err := json.Unmarshal(in, &s); err != nil {
			return err
		}
		out[r.Index] = s
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClientStringsBoundedOnEveryTransport: what a client sends about
// itself (a NATS client's CONNECT name, lang and version, its address as
// the transport reports it) and the Sqlgate-Reason header reach policy and
// the stored decision input cut to 256 and 512 bytes of valid UTF-8, on a
// NATS request, an async request and an auth callout alike.
func TestClientStringsBoundedOnEveryTransport(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	long := "x" + strings.Repeat("é", 20000) // 40 KB; 256 bytes would split an é
	invalid := "\xff" + strings.Repeat("a", 30000)
	host := strings.Repeat("h", 30000)    // the audit record names it too: valid UTF-8
	reason := strings.Repeat("€", 150000) // 450 KB; 512 bytes would split a €
	wantLong, wantInvalid, wantHost, wantReason := long[:255], "\uFFFD"+invalid[1:254], host[:256], reason[:510]
	check := func(t *testing.T, what string, got storedRequest, withReason bool) {
		t.Helper()
		c := got.Request.Client
		for field, v := range map[string][2]string{
			"host": {c.Host, wantHost}, "name": {c.Name, wantLong}, "lang": {c.Lang, wantInvalid}, "version": {c.Version, wantLong},
		} {
			if v[0] != v[1] || !utf8.ValidString(v[0]) {
				t.Errorf("%s: stored client %s = %.20q… (%d bytes), want %.20q… (%d bytes)", what, field, v[0], len(v[0]), v[1], len(v[1]))
			}
		}
		want := ""
		if withReason {
			want = wantReason
		}
		if got.Request.Reason != want {
			t.Errorf("%s: stored reason = %.20q… (%d bytes), want %d bytes", what, got.Request.Reason, len(got.Request.Reason), len(want))
		}
	}

	for _, transport := range []string{"nats", broker.TransportAsync} {
		t.Run(transport, func(t *testing.T) {
			c := e.caller(alice)
			c.Transport, c.Host, c.Name, c.Lang, c.Version = transport, host, long, invalid, long
			rep := e.svc.Handle(ctx, &broker.Request{
				Subject: brokertest.SubjectCreate, Payload: []byte(createAlice), Caller: c,
				Reason: reason, Received: time.Now(),
			})
			if !rep.OK {
				t.Fatalf("call = %s", rep.AppendJSON(nil))
			}
			got, ok := storedInputs(t, e)[rep.AuditIndex]
			if !ok {
				t.Fatalf("no stored input for the call's record %d", rep.AuditIndex)
			}
			check(t, transport+" call", got, true)
		})
	}

	t.Run("callout", func(t *testing.T) {
		p := alice
		p.Expiry = time.Now().Add(time.Hour)
		const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
		svc := calloutService(t, e, tokens{tok: p})
		key := userKey(t)
		if _, err := svc.Callout(ctx, broker.CalloutRequest{Token: tok, UserKey: key, Client: policy.Client{
			Host: host, Name: long, Lang: invalid, Version: long, UserKey: key, Account: usersAccount,
		}}); err != nil {
			t.Fatalf("Callout: %v", err)
		}
		n := 0
		for _, in := range storedInputs(t, e) {
			if in.Credential != nil && in.Credential.Via == "callout" {
				n++
				check(t, "callout", in, false)
				if in.Request.Client.UserKey != key || in.Request.Client.Account != usersAccount {
					t.Errorf("callout: stored client key %q, account %q; want them as given", in.Request.Client.UserKey, in.Request.Client.Account)
				}
			}
		}
		if n != 1 {
			t.Errorf("stored callout inputs = %d, want 1", n)
		}
	})
}
