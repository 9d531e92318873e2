package natsauth_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker/natsauth"
)

func TestLoadOrCreateKeysCreatesOnceAndReuses(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	first, err := natsauth.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateKeys: %v", err)
	}
	for _, name := range natsauth.KeyNames() {
		fi, err := os.Stat(filepath.Join(dir, name+".nk"))
		if err != nil {
			t.Fatalf("seed file %s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("mode of %s = %v, want 0600", name, got)
		}
	}
	second, err := natsauth.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateKeys again: %v", err)
	}
	if diff := cmp.Diff(first.Public(), second.Public()); diff != "" {
		t.Errorf("keys changed on restart (-first +second):\n%s", diff)
	}
	p := first.Public()
	checks := map[string]func(string) bool{
		p.Operator: nkeys.IsValidPublicOperatorKey, p.System: nkeys.IsValidPublicAccountKey,
		p.Broker: nkeys.IsValidPublicAccountKey, p.Users: nkeys.IsValidPublicAccountKey,
		p.Auth: nkeys.IsValidPublicAccountKey, p.XKey: nkeys.IsValidPublicCurveKey,
		p.UsersSigning[0]: nkeys.IsValidPublicAccountKey, p.SystemUser: nkeys.IsValidPublicUserKey,
		p.BrokerUser: nkeys.IsValidPublicUserKey, p.CalloutUser: nkeys.IsValidPublicUserKey,
		p.Sentinel: nkeys.IsValidPublicUserKey,
	}
	if len(checks) != 11 {
		t.Errorf("public keys not distinct: %d", len(checks))
	}
	for k, ok := range checks {
		if !ok(k) {
			t.Errorf("public key %s has the wrong type", k)
		}
	}
}

func TestLoadKeysFromEnvironmentOverridesFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := base.WriteKeys(dir); err != nil {
		t.Fatalf("WriteKeys: %v", err)
	}
	// Two signing keys from the environment: rotation.
	kp1, _ := nkeys.CreateAccount()
	kp2, _ := nkeys.CreateAccount()
	s1, _ := kp1.Seed()
	s2, _ := kp2.Seed()
	pub1, _ := kp1.PublicKey()
	pub2, _ := kp2.PublicKey()
	env := map[string]string{natsauth.EnvName("users-signing"): string(s1) + "\n" + string(s2) + "\n"}
	k, err := natsauth.LoadKeys(dir, func(n string) string { return env[n] })
	if err != nil {
		t.Fatalf("LoadKeys: %v", err)
	}
	if got, want := k.Public().UsersSigning, []string{pub1, pub2}; !cmp.Equal(got, want) {
		t.Errorf("UsersSigning = %v, want %v", got, want)
	}
	if got, want := k.Public().Operator, base.Public().Operator; got != want {
		t.Errorf("Operator = %s, want the file's %s", got, want)
	}
	// Everything from the environment, no directory.
	all := map[string]string{}
	for _, name := range natsauth.KeyNames() {
		b, err := os.ReadFile(filepath.Join(dir, name+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		all[natsauth.EnvName(name)] = string(b)
	}
	k2, err := natsauth.LoadKeys("", func(n string) string { return all[n] })
	if err != nil {
		t.Fatalf("LoadKeys(env only): %v", err)
	}
	if diff := cmp.Diff(base.Public(), k2.Public()); diff != "" {
		t.Errorf("env-only keys differ (-want +got):\n%s", diff)
	}
}

func TestLoadKeysReportsEveryProblemWithoutSeeds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, _ := natsauth.GenerateKeys()
	if err := base.WriteKeys(dir); err != nil {
		t.Fatal(err)
	}
	userKP, _ := nkeys.CreateUser()
	userSeed, _ := userKP.Seed()
	acc1, _ := nkeys.CreateAccount()
	acc2, _ := nkeys.CreateAccount()
	s1, _ := acc1.Seed()
	s2, _ := acc2.Seed()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name+".nk"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("operator", string(userSeed))                              // wrong type
	write("broker", string(s1)+"\n"+string(s2))                      // two seeds where one is allowed
	write("auth", "SAnotaseed")                                      // garbage
	write("users", "# only a comment\n")                             // empty
	if err := os.Remove(filepath.Join(dir, "xkey.nk")); err != nil { // missing
		t.Fatal(err)
	}
	_, err := natsauth.LoadKeys(dir, nil)
	if err == nil {
		t.Fatal("LoadKeys accepted broken key files")
	}
	msg := err.Error()
	for _, want := range []string{"operator key", "broker key", "auth key", "users key", "xkey key"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	for _, secret := range [][]byte{userSeed, s1, s2} {
		if strings.Contains(msg, string(secret)) {
			t.Errorf("error contains seed material: %q", msg)
		}
	}
}

func TestKeysNeverPrintSeeds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := natsauth.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, name := range natsauth.KeyNames() {
		b, _ := os.ReadFile(filepath.Join(dir, name+".nk"))
		seeds = append(seeds, strings.TrimSpace(string(b)))
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %s %q\n", k, k, k, k, k)
	fmt.Fprintf(&buf, "%v %+v\n", *k, *k)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("keys", "keys", k)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("keys", "keys", k)
	out := buf.String()
	for _, s := range seeds {
		if strings.Contains(out, s) {
			t.Fatalf("printed keys contain a seed: %s", out)
		}
	}
	if !strings.Contains(out, "REDACTED") {
		t.Errorf("printed keys show no redaction: %s", out)
	}
}

// TestLoadKeysRefusesSeedsOthersMayRead checks that a seed file users other
// than its owner and group may access is refused, naming the file and the
// fix, and that the modes nats-setup writes (0600) and a Kubernetes Secret
// mounted with the pod's fsGroup (0440) are accepted.
func TestLoadKeysRefusesSeedsOthersMayRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := natsauth.LoadOrCreateKeys(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range natsauth.KeyNames() {
		if fi, err := os.Stat(filepath.Join(dir, name+".nk")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s.nk: %v, want a 0600 file", name, err)
		}
	}
	operator := filepath.Join(dir, "operator.nk")
	for mode, refused := range map[os.FileMode]bool{0o644: true, 0o604: true, 0o601: true, 0o440: false, 0o640: false} {
		if err := os.Chmod(operator, mode); err != nil {
			t.Fatal(err)
		}
		_, err := natsauth.LoadKeys(dir, nil)
		want := fmt.Sprintf("operator key: %s is accessible to other users (mode %04o): it holds a seed; run chmod o-rwx %s", operator, mode, operator)
		switch {
		case refused && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("mode %04o: err = %v, want %q", mode, err, want)
		case !refused && err != nil:
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	// The environment wins over a file: its mode does not matter then.
	if err := os.Chmod(operator, 0o644); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(operator)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{natsauth.EnvName("operator"): string(seed)}
	if _, err := natsauth.LoadKeys(dir, func(n string) string { return env[n] }); err != nil {
		t.Errorf("operator seed from the environment beside a 0644 file: %v", err)
	}
}
