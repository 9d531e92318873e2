package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// FuzzStateFile loads arbitrary CLI state files (state.json). A file that
// does not decode is an error naming the file, never a panic; an accepted
// state saves and loads back the same.
func FuzzStateFile(f *testing.F) {
	good, _ := json.MarshalIndent(state{
		Broker: "https://sqlgate.example.com", Issuer: "https://idp.example",
		ClientID: "sqlgate-cli", Scopes: []string{"openid", "offline_access"}, NATSURL: "nats://127.0.0.1:4222",
		Principal: "https://idp.example alice", SecretFile: "/run/secret",
	}, "", "  ")
	f.Add(good)
	f.Add([]byte(`{"broker":"x","scopes":null,"unknown":[1,2]}`))
	f.Add([]byte(`{"broker":1}`))
	f.Add([]byte(`{"scopes":"openid"}`))
	f.Add([]byte(`{"scopes":[],"service_scopes":[]}`))
	f.Add([]byte(`{}{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	dir := f.TempDir()
	e := &env{home: dir, getenv: func(string) string { return "" }}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(e.path(stateFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := e.loadState()
		if err != nil {
			if !strings.Contains(err.Error(), e.path(stateFile)) {
				t.Fatalf("refusal %q does not name the state file", err)
			}
			return
		}
		if err := e.saveState(st); err != nil {
			t.Fatalf("saving a loaded state: %v", err)
		}
		again, err := e.loadState()
		if err != nil || !reflect.DeepEqual(normalState(st), normalState(again)) {
			t.Fatalf("state changed in a save and load: %+v -> %+v (%v)", st, again, err)
		}
	})
}

// normalState makes empty scope lists nil (omitempty drops them).
func normalState(st *state) state {
	c := *st
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	if len(c.ServiceScopes) == 0 {
		c.ServiceScopes = nil
	}
	return c
}

// FuzzCredsFile reads arbitrary NATS creds files (sqlgate call --creds, the
// saved nats.creds). Only a file holding a user JWT signed by its issuer is
// read; its subject is a user public key, which the CLI takes for the lease
// id and the inbox prefix. Refusals are errors, never panics, and do not
// quote the file (it holds the seed).
func FuzzCredsFile(f *testing.F) {
	user, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	account, err := nkeys.FromRawSeed(nkeys.PrefixByteAccount, bytes.Repeat([]byte{2}, 32))
	if err != nil {
		f.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.IssuedAt, uc.Expires = 1700000000, 4102444800
	tok, err := uc.Encode(account)
	if err != nil {
		f.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(creds)
	f.Add(bytes.ReplaceAll(creds, []byte("\n"), []byte("\r\n")))
	f.Add([]byte(tok))
	f.Add(bytes.Replace(creds, []byte(tok[len(tok)-10:]), []byte("AAAAAAAAAA"), 1))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\n------END NATS USER JWT------\n"))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nnot.a.jwt\n------END NATS USER JWT------\n"))
	f.Add([]byte(""))
	path := filepath.Join(f.TempDir(), "user.creds")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		uc, err := userClaimsOf(path)
		if err != nil {
			if len(data) >= 16 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("refusal %q quotes the creds file", err)
			}
			if bytes.Contains(data, seed) && strings.Contains(err.Error(), string(seed)) {
				t.Fatal("refusal quotes the seed")
			}
			return
		}
		if !nkeys.IsValidPublicUserKey(uc.Subject) {
			t.Fatalf("accepted a creds file whose subject %q is not a user public key", uc.Subject)
		}
	})
}

// FuzzAuditProofFile checks arbitrary saved proofs (sqlgate audit prove
// --proof FILE --key VKEY). Only a receipt of a record the log signed
// passes (exit 0); anything else fails with exit 1, never a panic nor a
// usage error.
func FuzzAuditProofFile(f *testing.F) {
	const origin = "sqlgate.test/a"
	clk := audittest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(f, origin)
	cfg.Now = clk.Now
	store := audittest.NewStore()
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		f.Fatal(err)
	}
	genuine := map[int64][]byte{}
	for i := range 3 {
		clk.Add(time.Minute)
		if _, err := l.Append(context.Background(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "r" + string(rune('0'+i))}}); err != nil {
			f.Fatal(err)
		}
	}
	for i := range int64(4) {
		p, err := l.Proof(context.Background(), i)
		if err != nil {
			f.Fatal(err)
		}
		genuine[i] = p.Record
		b, _ := json.Marshal(p)
		f.Add(b)
		if i == 1 {
			q := *p
			q.Index = 2
			b, _ = json.Marshal(q)
			f.Add(b) // the record claims another index
			q = *p
			q.Record = bytes.Replace(p.Record, []byte("r0"), []byte("r9"), 1)
			b, _ = json.Marshal(q)
			f.Add(b) // the record was edited
			q = *p
			q.Checkpoint = strings.Replace(p.Checkpoint, "\n4\n", "\n5\n", 1)
			b, _ = json.Marshal(q)
			f.Add(b) // the checkpoint was edited
		}
	}
	if err := l.Close(context.Background()); err != nil {
		f.Fatal(err)
	}
	_, vkey := audittest.Key(f, origin, 1)
	f.Add([]byte(`{"origin":"sqlgate.test/a","index":-1,"record":"","inclusion":[],"checkpoint":""}`))
	f.Add([]byte(`{"inclusion":["AAAA"]}`))
	f.Add([]byte(`{"index":9223372036854775807,"inclusion":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	dir := f.TempDir()
	proofPath := filepath.Join(dir, "proof.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(proofPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := &cli{t: t, home: dir, env: map[string]string{}}
		code, out, errOut := c.run("", "audit", "prove", "--proof", proofPath, "--key", vkey, "--output", "json")
		switch code {
		case 0:
			var p audit.Proof
			if err := json.Unmarshal(data, &p); err != nil || p.Origin != origin || genuine[p.Index] == nil || !bytes.Equal(p.Record, genuine[p.Index]) {
				t.Fatalf("a proof of a record the log did not sign at that index passed: %s\n%s", data, out)
			}
		case 1:
		default:
			t.Fatalf("audit prove --proof: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})
}

// FuzzReplayInputs reads arbitrary recorded-input files (sqlgate policy
// replay --inputs, JSON lines). A malformed line ends the sequence with one
// error naming it; every item yielded is a decision record's; nothing
// panics.
func FuzzReplayInputs(f *testing.F) {
	f.Add([]byte(`{"record":{"kind":"decision","entry":"call","decision_id":"d1","correlation_id":"c1","allow":true,"policy_revision":"r","input_sha256":"00","params":{"a":"redacted","b":"hmac-sha256:k1:00"}},"input":{"principal":{"issuer":"i","subject":"s"}}}` + "\n" +
		`{"record":{"kind":"admin","admin":{"action":"nats_revoke"}}}` + "\n"))
	f.Add([]byte(`{"record":{"entry":"nats","allow":false},"input":null}` + "\n\n"))
	f.Add([]byte(`{"record":{"entry":"call","allow":"yes"}}`))
	f.Add([]byte(`{"record":{"entry":"call","allow":true}}` + "\n" + `not json` + "\n" + `{"record":{"entry":"call","allow":true}}`))
	f.Add([]byte(`{"record":{"time":"never"}}`))
	f.Add([]byte("\n\n\n"))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		items, errs := 0, 0
		for item, err := range replayItems(data) {
			if errs > 0 {
				t.Fatalf("yielded after an error: %+v, %v", item, err)
			}
			if err != nil {
				errs++
				continue
			}
			items++
			if item.Entry == "" {
				t.Fatalf("yielded an item without entry: %+v", item)
			}
		}
		if items > lines {
			t.Fatalf("%d items from %d lines", items, lines)
		}
	})
}
