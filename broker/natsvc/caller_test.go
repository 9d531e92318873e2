package natsvc

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker/natsauth"
)

func testTrust(t testing.TB) (trust, string, string, string) {
	t.Helper()
	acc, _ := nkeys.CreateAccount()
	sk, _ := nkeys.CreateAccount()
	u, _ := nkeys.CreateUser()
	accPub, _ := acc.PublicKey()
	skPub, _ := sk.PublicKey()
	uPub, _ := u.PublicKey()
	return trust{account: accPub, signingKeys: map[string]struct{}{skPub: {}}}, accPub, skPub, uPub
}

func TestUserKeyTagPrefixMatchesNatsauth(t *testing.T) {
	if userKeyTagPrefix != natsauth.UserKeyTagPrefix {
		t.Fatalf("natsvc reads tag %q, natsauth writes %q", userKeyTagPrefix, natsauth.UserKeyTagPrefix)
	}
}

func TestCallerFromRequestInfo(t *testing.T) {
	t.Parallel()
	tr, acc, sk, user := testTrust(t)
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	foreignSK, _ := nkeys.CreateAccount()
	foreignPub, _ := foreignSK.PublicKey()
	tag := `"nkey:` + strings.ToLower(user) + `"`
	info := func(acc, issuer, tags string) string {
		return `{"acc":"` + acc + `","user":"` + otherPub + `","issuer_key":"` + issuer + `","name_tag":"Alice","tags":[` + tags + `],"host":"10.0.0.1","lang":"go","ver":"1.55.0","name":"client-says","jwt":"eyJ..."}`
	}
	withKind := func(info, kind string) string { return strings.TrimSuffix(info, "}") + `,"kind":"` + kind + `"}` }
	valid := info(acc, sk, tag+`,"group:sales"`)
	tests := []struct {
		name       string
		values     []string
		attested   bool
		serverKind string
	}{
		{"valid", []string{valid}, true, ""},
		{"valid_client", []string{withKind(valid, "Client")}, true, ""},
		{"valid_leafnode", []string{withKind(valid, "Leafnode")}, true, ""},
		// What the server writes for a message-trace event crossing the
		// users import (nats-server v2.15.3).
		{"trace_event", []string{`{"start":"2026-11-28T12:49:42.168272629Z","id":6,"acc":"` + acc + `","server":"NCGMOCWIWIDY23AMJQ4A47TMRCIZPMQ4CRPVWDUY4WP2DAMFUSW44M5K","kind":"Account"}`}, false, "Account"},
		{"account_kind_with_user_fields", []string{withKind(valid, "Account")}, false, "Account"},
		{"jetstream_kind", []string{withKind(valid, "JetStream")}, false, "JetStream"},
		{"system_kind", []string{withKind(valid, "System")}, false, "System"},
		{"server_kind_twice", []string{withKind(valid, "Account"), withKind(valid, "Account")}, false, ""},
		{"no_header", nil, false, ""},
		{"two_values", []string{info(acc, sk, tag), info(acc, sk, tag)}, false, ""},
		{"other_account", []string{info(foreignPub, sk, tag)}, false, ""},
		{"empty_account", []string{info("", sk, tag)}, false, ""},
		{"foreign_signing_key", []string{info(acc, foreignPub, tag)}, false, ""},
		{"account_key_as_issuer", []string{info(acc, acc, tag)}, false, ""},
		{"no_key_tag", []string{info(acc, sk, `"group:sales"`)}, false, ""},
		{"two_key_tags", []string{info(acc, sk, tag+`,"nkey:`+strings.ToLower(otherPub)+`"`)}, false, ""},
		{"key_tag_not_a_user_key", []string{info(acc, sk, `"nkey:`+strings.ToLower(acc)+`"`)}, false, ""},
		{"bad_json", []string{`{"acc":`}, false, ""},
		{"json_array", []string{`[]`}, false, ""},
	}
	cached := tr
	cached.cache = newCallerCache()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, kind := tr.caller(tc.values)
			// The cache answers exactly as the parser, twice.
			for range 2 {
				cc, ckind := cached.cachedCaller(tc.values)
				if cc.Attested != c.Attested || cc.UserKey != c.UserKey || !slices.Equal(cc.Tags, c.Tags) || ckind != kind {
					t.Fatalf("cachedCaller = %+v %q, caller = %+v %q", cc, ckind, c, kind)
				}
			}
			if kind != tc.serverKind {
				t.Errorf("server kind = %q, want %q", kind, tc.serverKind)
			}
			if c.Transport != "nats" {
				t.Errorf("Transport = %q", c.Transport)
			}
			if c.Attested != tc.attested {
				t.Fatalf("Attested = %v, want %v (%+v)", c.Attested, tc.attested, c)
			}
			if !tc.attested {
				if c.UserKey != "" || c.Account != "" || c.Name != "" || c.Tags != nil {
					t.Errorf("unattested caller carries data: %+v", c)
				}
				return
			}
			if c.UserKey != user || c.IssuerKey != sk || c.Account != acc || c.Name != "Alice" || c.Host != "10.0.0.1" ||
				c.Lang != "go" || c.Version != "1.55.0" || len(c.Tags) != 1 || c.Tags[0] != "group:sales" {
				t.Errorf("caller = %+v (user must come from the tag, not %s)", c, otherPub)
			}
		})
	}
}

func FuzzCaller(f *testing.F) {
	tr, acc, sk, user := testTrust(f)
	f.Add(`{"acc":"` + acc + `","issuer_key":"` + sk + `","tags":["nkey:` + strings.ToLower(user) + `"]}`)
	f.Add(`{"acc":"` + acc + `","issuer_key":"` + sk + `","tags":["nkey:x","nkey:y"]}`)
	f.Add(`{}`)
	f.Add(`null`)
	f.Add(`{"tags":null,"acc":1}`)
	f.Fuzz(func(t *testing.T, s string) {
		c, kind := tr.caller([]string{s})
		if c.Attested && kind != "" {
			t.Fatalf("attested caller of a message the server published (%q): %+v", kind, c)
		}
		if !c.Attested {
			if c.UserKey != "" || c.Account != "" {
				t.Fatalf("unattested caller with data: %+v", c)
			}
			return
		}
		if c.Account != acc || c.IssuerKey != sk || !nkeys.IsValidPublicUserKey(c.UserKey) {
			t.Fatalf("attested caller does not match the trust: %+v", c)
		}
	})
}

func BenchmarkCaller(b *testing.B) {
	tr, acc, sk, user := testTrust(b)
	info := []string{`{"start":"2026-11-27T07:43:42.915722086Z","host":"127.0.0.1","id":7,"acc":"` + acc + `","user":"` + user +
		`","name":"billing","lang":"go","ver":"1.55.0","rtt":249330,"server":"NDMMBS4ZJS2CYCWBM7AAYC6GHAPGDUOJET4C4V4CT34AQLA73K4V3VV6","jwt":"` +
		strings.Repeat("x", 800) + `","issuer_key":"` + sk + `","name_tag":"00uAlice","tags":["nkey:` + strings.ToLower(user) +
		`","email:alice@example.com"],"kind":"Client","client_type":"nats"}`}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if c, _ := tr.caller(info); !c.Attested {
				b.Fatal("not attested")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		tr.cache = newCallerCache()
		b.ReportAllocs()
		for b.Loop() {
			if c, _ := tr.cachedCaller(info); !c.Attested {
				b.Fatal("not attested")
			}
		}
	})
}
