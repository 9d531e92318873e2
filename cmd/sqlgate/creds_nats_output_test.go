package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

// credsBroker issues NATS credentials (calling issued, when set, before it
// answers) and revokes leases, recording both.
type credsBroker struct {
	t       *testing.T
	issued  func()
	mu      sync.Mutex
	keys    []string // public keys credentials were issued for
	revoked []string
}

func (b *credsBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case r.URL.Path == api.Prefix+"/nats/creds":
		var req api.NATSCredsRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		b.keys = append(b.keys, req.PublicKey)
		if b.issued != nil {
			b.issued()
		}
		exp := time.Now().Add(15 * time.Minute)
		_ = json.NewEncoder(w).Encode(api.NATSCreds{
			JWT: userJWT(b.t, req.PublicKey, exp), ExpiresAt: exp, InboxPrefix: "_INBOX_" + req.PublicKey,
			NATSURL: "nats://127.0.0.1:4222", Pub: []string{"orders.v1.get"},
		})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, api.Prefix+"/leases/"):
		id := strings.TrimPrefix(r.URL.Path, api.Prefix+"/leases/")
		b.revoked = append(b.revoked, id)
		_ = json.NewEncoder(w).Encode(api.Lease{ID: id, Type: "nats", State: "revoked"})
	default:
		http.NotFound(w, r)
	}
}

// TestCredsNATSUnwritableOutput: creds nats checks that it can write the
// creds file before it asks the broker for a credential, so that a target
// it cannot write leaves no active credential behind; and when the write
// still fails after the credential was issued, it revokes that credential
// and says so.
func TestCredsNATSUnwritableOutput(t *testing.T) {
	b := &credsBroker{t: t}
	c := signedInCLI(t, b)

	dir := t.TempDir()
	code, _, errOut := c.run("", "creds", "nats", "-o", dir)
	if code != 1 || !strings.Contains(errOut, "write "+dir+": it is a directory") || len(b.keys) != 0 {
		t.Errorf("creds nats -o DIRECTORY: exit %d, %q, %d credentials issued; want it refused before asking", code, errOut, len(b.keys))
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = c.run("", "creds", "nats", "-o", filepath.Join(file, "user.creds"))
	if code != 1 || !strings.Contains(errOut, "create "+file) || len(b.keys) != 0 {
		t.Errorf("creds nats -o below a file: exit %d, %q, %d credentials issued; want it refused before asking", code, errOut, len(b.keys))
	}

	// The destination turns into a directory while the broker issues the
	// credential: the file cannot be put in place.
	out := filepath.Join(t.TempDir(), "user.creds")
	b.issued = func() {
		if err := os.Mkdir(out, 0o700); err != nil {
			t.Error(err)
		}
	}
	code, _, errOut = c.run("", "creds", "nats", "-o", out)
	if len(b.keys) != 1 {
		t.Fatalf("creds nats: %d credentials issued, want 1 (%s)", len(b.keys), errOut)
	}
	want := "the NATS credential issued for it (user key " + b.keys[0] + ") was revoked"
	if code != 1 || !strings.Contains(errOut, "write "+out) || !strings.HasSuffix(strings.TrimSpace(errOut), want) || len(b.revoked) != 1 || b.revoked[0] != b.keys[0] {
		t.Errorf("creds nats with a failing write: exit %d, %q, revoked %q; want %s revoked and %q", code, errOut, b.revoked, b.keys[0], want)
	}
	if _, err := os.Stat(filepath.Join(c.home, natsInfoFile)); err == nil {
		t.Errorf("nats.json was written for the revoked credential")
	}
}

// TestCredsNATSInfoUnwritableKeepsCreds: when nats.json cannot be put in
// place after the broker issued a new credential, the previous creds file,
// still valid, is left as it was (not replaced by the new credential, which
// is revoked), and so is nats.json.
func TestCredsNATSInfoUnwritableKeepsCreds(t *testing.T) {
	b := &credsBroker{t: t}
	c := signedInCLI(t, b)
	if code, _, errOut := c.run("", "creds", "nats"); code != 0 {
		t.Fatalf("creds nats: exit %d, %s", code, errOut)
	}
	credsPath, infoPath := filepath.Join(c.home, natsCredsOut), filepath.Join(c.home, natsInfoFile)
	oldCreds, err := os.ReadFile(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	oldInfo, err := os.ReadFile(infoPath)
	if err != nil {
		t.Fatal(err)
	}

	// nats.json turns into a directory while the broker issues the second
	// credential: it cannot be put in place, while the creds file can.
	b.issued = func() {
		if err := os.Rename(infoPath, infoPath+".kept"); err != nil {
			t.Error(err)
		}
		if err := os.Mkdir(infoPath, 0o700); err != nil {
			t.Error(err)
		}
	}
	code, _, errOut := c.run("", "creds", "nats")
	if len(b.keys) != 2 {
		t.Fatalf("creds nats: %d credentials issued, want 2 (%s)", len(b.keys), errOut)
	}
	want := "the NATS credential issued for it (user key " + b.keys[1] + ") was revoked"
	if code != 1 || !strings.Contains(errOut, "write "+infoPath) || !strings.HasSuffix(strings.TrimSpace(errOut), want) ||
		len(b.revoked) != 1 || b.revoked[0] != b.keys[1] {
		t.Errorf("creds nats with nats.json unwritable: exit %d, %q, revoked %q; want %s revoked and %q", code, errOut, b.revoked, b.keys[1], want)
	}
	if got, err := os.ReadFile(credsPath); err != nil || string(got) != string(oldCreds) {
		t.Errorf("creds file after the failed creds nats: %v, changed = %t; want the previous, still valid, one", err, string(got) != string(oldCreds))
	}
	if got, err := os.ReadFile(infoPath + ".kept"); err != nil || string(got) != string(oldInfo) {
		t.Errorf("nats.json after the failed creds nats: %q, %v; want %q", got, err, oldInfo)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(c.home, ".tmp-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left in %s: %v", c.home, leftovers)
	}

	// With no creds file before, none is left behind.
	fresh := signedInCLI(t, b)
	out := filepath.Join(t.TempDir(), "user.creds")
	b.issued = func() {
		if err := os.Mkdir(filepath.Join(fresh.home, natsInfoFile), 0o700); err != nil {
			t.Error(err)
		}
	}
	code, _, errOut = fresh.run("", "creds", "nats", "-o", out)
	if code != 1 || len(b.revoked) != 2 || b.revoked[1] != b.keys[2] {
		t.Errorf("creds nats -o FILE with nats.json unwritable: exit %d, %q, revoked %q; want %s revoked", code, errOut, b.revoked, b.keys[2])
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("creds file of the revoked credential: %v; want none written", err)
	}
}
