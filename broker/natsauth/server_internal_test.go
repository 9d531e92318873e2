package natsauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

func TestStoredRevocationsCarriedOverWithinHorizon(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	user := func() string {
		kp, _ := nkeys.CreateUser()
		p, _ := kp.PublicKey()
		return p
	}
	recent, old := user(), user()
	dir := t.TempDir()
	stored, err := keys.usersAccountJWT(nil, nil, jwt.RevocationList{
		recent: now.Add(-time.Minute).Unix(),
		old:    now.Add(-48 * time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, keys.pub.Users+".jwt")
	if err := os.WriteFile(path, []byte(stored), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := storedRevocations(keys, dir, 24*time.Hour, now)
	if err != nil {
		t.Fatalf("storedRevocations: %v", err)
	}
	if _, ok := got[recent]; !ok || len(got) != 1 {
		t.Errorf("storedRevocations = %v, want only the recent entry", got)
	}

	// A users account JWT signed by another operator is ignored.
	other, _ := GenerateKeys()
	other.pub.Users, other.users = keys.pub.Users, keys.users
	forged, err := other.usersAccountJWT(nil, nil, jwt.RevocationList{recent: now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := storedRevocations(keys, dir, 24*time.Hour, now); err != nil || len(got) != 0 {
		t.Errorf("storedRevocations(foreign operator) = %v, %v; want none", got, err)
	}

	// No stored file: nothing, no error.
	if got, err := storedRevocations(keys, t.TempDir(), time.Hour, now); err != nil || len(got) != 0 {
		t.Errorf("storedRevocations(empty dir) = %v, %v", got, err)
	}
}

// An IPv6 listen address is written bracketed: "::1:4222" is not an address
// nats-server (or anyone) can parse, and sqlgated dev --nats [::1]:PORT
// failed to start with it.
func TestEmbeddedOptionsIPv6Host(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := EmbeddedOptions(keys, EmbeddedConfig{Dir: t.TempDir(), Host: "::1", Port: 4470})
	if err != nil {
		t.Fatalf("EmbeddedOptions(::1): %v", err)
	}
	if opts.Host != "::1" || opts.Port != 4470 {
		t.Errorf("listen = %s:%d, want ::1:4470", opts.Host, opts.Port)
	}
	jwts, err := keys.accountJWTs(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	text, err := (&ServerConfig{Host: "::1", Port: 4470, ResolverDir: t.TempDir()}).Render(jwts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, `listen: "[::1]:4470"`) {
		t.Errorf("rendered config lacks the bracketed listen address:\n%s", text)
	}
}
