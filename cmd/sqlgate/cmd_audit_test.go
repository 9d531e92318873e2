package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestAuditExportKeepsFileOnFailure checks that an export the broker
// refuses leaves an earlier bundle at -o as it was, and leaves no temporary
// file behind.
func TestAuditExportKeepsFileOnFailure(t *testing.T) {
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"auditors only"}}`))
	}))
	dir := t.TempDir()
	bundle := filepath.Join(dir, "log.bundle")
	const earlier = "an earlier, verified export\n"
	if err := os.WriteFile(bundle, []byte(earlier), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run("", "audit", "export", "-o", bundle)
	if code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("refused export: exit %d, %s; want 1 and the broker's refusal", code, errOut)
	}
	if got, err := os.ReadFile(bundle); err != nil || string(got) != earlier {
		t.Errorf("after a refused export, %s = %q, %v; want the earlier export untouched", bundle, got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("after a refused export, the directory holds %d entries, want only the earlier bundle", len(entries))
	}
}

// twoInstanceBundle writes a bundle of the logs of two instances, each with
// records 0 to 12, exported from index from (a bundle that starts with a
// frontier when from > 0). It returns the path, the store and the verifier
// key of each origin.
func twoInstanceBundle(t *testing.T, from int64) (string, *audittest.Store, map[string]string) {
	t.Helper()
	store := audittest.NewStore()
	keys := map[string]string{}
	for _, org := range []string{"sqlgate.test/a", "sqlgate.test/b"} {
		clk := audittest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
		cfg := audittest.Config(t, org)
		cfg.Now = clk.Now
		l, err := audit.Open(context.Background(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			clk.Add(time.Minute)
			if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: org + " " + strconv.Itoa(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, keys[org] = audittest.Key(t, org, 1)
	}
	var b bytes.Buffer
	if err := audit.WriteBundle(t.Context(), &b, store, audit.BundleOptions{From: from}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.bundle")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, store, keys
}

// leafOf is the hex leaf hash of a stored record, as an evidence row names
// it.
func leafOf(t *testing.T, store *audittest.Store, origin string, index int64) string {
	t.Helper()
	var leaf string
	err := store.Records(t.Context(), origin, index, index+1, func(_ int64, data []byte, _ *tlog.Hash) error {
		h := audit.LeafHash(data)
		leaf = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil || leaf == "" {
		t.Fatalf("record %d of %s: %v", index, origin, err)
	}
	return leaf
}

// TestAuditProveFromBundle: an auditor proves a sampled evidence row
// offline, from the bundle, naming its origin: each instance numbers its
// records from 0, so the same index of the other origin is another record.
func TestAuditProveFromBundle(t *testing.T) {
	for _, from := range []int64{0, 5} {
		bundle, store, keys := twoInstanceBundle(t, from)
		c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
		for org, vkey := range keys {
			for index := from; index < 13; index++ {
				out := c.must("", "audit", "prove", "--bundle", bundle, "--origin", org, strconv.FormatInt(index, 10), "--key", vkey)
				want := fmt.Sprintf("record %d of %s is in the signed log", index, org)
				if leaf := leafOf(t, store, org, index); !strings.Contains(out, want) || !strings.Contains(out, "leaf hash "+leaf) {
					t.Errorf("bundle from %d: prove %s %d = %s; want %q and leaf hash %s", from, org, index, out, want, leaf)
				}
			}
		}
		if leafOf(t, store, "sqlgate.test/a", 7) == leafOf(t, store, "sqlgate.test/b", 7) {
			t.Fatal("the two origins' records 7 are the same: the test cannot tell them apart")
		}
		// JSON names the leaf hash too.
		var res struct {
			OK       bool   `json:"ok"`
			Origin   string `json:"origin"`
			LeafHash string `json:"leaf_hash"`
		}
		out := c.must("", "audit", "prove", "--bundle", bundle, "--origin", "sqlgate.test/b", "7", "--key", keys["sqlgate.test/b"], "--output", "json")
		if err := json.Unmarshal([]byte(out), &res); err != nil || !res.OK || res.Origin != "sqlgate.test/b" || res.LeafHash != leafOf(t, store, "sqlgate.test/b", 7) {
			t.Errorf("prove --output json = %s (%v)", out, err)
		}
	}

	// -o names the bundle: the proof would replace the log it is read from.
	{
		bundle, _, keys := twoInstanceBundle(t, 0)
		before, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
		code, _, errOut := c.run("", "audit", "prove", "--bundle", bundle, "--origin", "sqlgate.test/a", "7", "--key", keys["sqlgate.test/a"], "-o", bundle)
		if code != 2 || !strings.Contains(errOut, "is the --bundle the record is proved from") {
			t.Errorf("prove -o the bundle: exit %d, %q; want a usage error", code, errOut)
		}
		if after, err := os.ReadFile(bundle); err != nil || !bytes.Equal(after, before) {
			t.Errorf("the bundle changed after prove was refused to write over it (%v)", err)
		}
	}

	bundle, _, keys := twoInstanceBundle(t, 5)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no origin", []string{"7", "--key", keys["sqlgate.test/a"]}, 2, "--origin is required with --bundle"},
		{"unknown origin", []string{"--origin", "sqlgate.test/c", "7", "--key", keys["sqlgate.test/a"]}, 1, "holds no log of origin sqlgate.test/c (it holds: sqlgate.test/a, sqlgate.test/b)"},
		{"key of the other origin", []string{"--origin", "sqlgate.test/a", "7", "--key", keys["sqlgate.test/b"]}, 1, "the log of sqlgate.test/a in " + bundle + " does not verify"},
		{"index before the bundle", []string{"--origin", "sqlgate.test/a", "4", "--key", keys["sqlgate.test/a"]}, 1, "record 4 of sqlgate.test/a: not in"},
		{"index past the log", []string{"--origin", "sqlgate.test/a", "13", "--key", keys["sqlgate.test/a"]}, 1, "record 13 of sqlgate.test/a: not in"},
	} {
		code, out, errOut := c.run("", append([]string{"audit", "prove", "--bundle", bundle}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.name, code, out, errOut, tc.code, tc.wantErr)
		}
	}
}

// TestAuditProveRefusesAnotherOriginFromTheBroker: the broker proves the
// records of its own log only; asked for a record of another instance, the
// CLI refuses instead of proving the broker's record of that index.
func TestAuditProveRefusesAnotherOriginFromTheBroker(t *testing.T) {
	store := audittest.NewStore()
	l, err := audit.Open(context.Background(), store, audittest.Config(t, "sqlgate.test/a"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close(context.Background()) }()
	if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "r1"}}); err != nil {
		t.Fatal(err)
	}
	proof, err := l.Proof(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(proof)
	}))
	_, vkey := audittest.Key(t, "sqlgate.test/a", 1)
	if out := c.must("", "audit", "prove", "1", "--origin", "sqlgate.test/a", "--key", vkey); !strings.Contains(out, "record 1 of sqlgate.test/a is in the signed log") {
		t.Errorf("prove of the broker's own origin = %s", out)
	}
	code, out, errOut := c.run("", "audit", "prove", "1", "--origin", "sqlgate.test/b", "--key", vkey)
	if code != 1 || strings.Contains(out, "is in the signed log") || !strings.Contains(errOut, "the broker proves records of its own log, sqlgate.test/a, only") || !strings.Contains(errOut, "--bundle FILE --origin sqlgate.test/b") {
		t.Errorf("prove of another origin through the broker: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestAuditMalformedKeyIsUsageError: a --key that is not a verifier key is
// a usage error naming the flag, whatever the command.
func TestAuditMalformedKeyIsUsageError(t *testing.T) {
	bundle, _, keys := twoInstanceBundle(t, 0)
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "e.zip")
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	c.must("", "audit", "evidence", "--bundle", bundle, "--key", keys["sqlgate.test/a"], "--key", keys["sqlgate.test/b"],
		"--from", "2026-03-02", "--to", "2026-03-03", "-o", zipPath)
	keysFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keysFile, []byte("# trusted\n"+keys["sqlgate.test/a"]+"\ngarbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"evidence", "--bundle", bundle, "--key", "garbage", "--from", "2026-03-02", "--to", "2026-03-03", "-o", filepath.Join(dir, "x.zip")}, "--key"},
		{[]string{"evidence", "--bundle", bundle, "--keys-file", keysFile, "--from", "2026-03-02", "--to", "2026-03-03", "-o", filepath.Join(dir, "x.zip")}, "--keys-file " + keysFile + " line 3"},
		{[]string{"check-evidence", zipPath, "--key", "garbage"}, "--key"},
		{[]string{"check-evidence", zipPath, "--key", keys["sqlgate.test/a"], "--signer-key", "garbage"}, "--signer-key"},
		{[]string{"verify", "--bundle", bundle, "--key", "garbage"}, "--key"},
		{[]string{"prove", "--bundle", bundle, "--origin", "sqlgate.test/a", "1", "--key", "garbage"}, "--key"},
	} {
		code, _, errOut := c.run("", append([]string{"audit"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.flag+": not a verifier key") {
			t.Errorf("audit %s: exit %d, %q; want 2 and a usage error naming %s", strings.Join(tc.args, " "), code, errOut, tc.flag)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.zip")); !os.IsNotExist(err) {
		t.Errorf("a refused evidence run wrote its archive: %v", err)
	}
}

// TestAuditEvidenceRefusesFutureEndAndItsInput: a period that has not ended
// cannot be evidenced (the log does not cover it), and -o naming the
// bundle would replace the log the evidence is read from.
func TestAuditEvidenceRefusesFutureEndAndItsInput(t *testing.T) {
	bundle, _, keys := twoInstanceBundle(t, 0)
	before, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	zipPath := filepath.Join(t.TempDir(), "e.zip")
	evidence := func(args ...string) (int, string, string) {
		return c.run("", append([]string{"audit", "evidence", "--bundle", bundle, "--key", keys["sqlgate.test/a"], "--key", keys["sqlgate.test/b"]}, args...)...)
	}
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	for _, to := range []string{"+1h", tomorrow} {
		if code, _, errOut := evidence("--from", "2026-03-02", "--to", to, "-o", zipPath); code != 2 || !strings.Contains(errOut, "--to "+to+" is in the future") {
			t.Errorf("--to %s: exit %d, %q; want a usage error", to, code, errOut)
		}
	}
	if _, err := os.Stat(zipPath); !os.IsNotExist(err) {
		t.Errorf("a refused period wrote the archive: %v", err)
	}
	// now is the end of a period that has ended; the log ends on 2 March,
	// so the evidence says it is incomplete.
	code, out, errOut := evidence("--from", "2026-03-02", "--to", "now", "-o", zipPath)
	if code != 0 || !strings.Contains(out, "WARNING: ") || !strings.Contains(out, "the log covers only records up to 2026-03-02") {
		t.Errorf("--to now: exit %d, stdout %q, stderr %q; want the archive, with a warning that the log ends on 2 March", code, out, errOut)
	}
	if code, _, errOut := evidence("--from", "2026-03-02", "--to", "2026-03-03", "-o", bundle); code != 2 || !strings.Contains(errOut, "is the --bundle the evidence is read from") {
		t.Errorf("-o the bundle: exit %d, %q; want a usage error", code, errOut)
	}
	if after, err := os.ReadFile(bundle); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the bundle changed after evidence was refused to write over it (%v)", err)
	}
}

// TestAuditUsageErrors: flag mistakes of audit keygen and a record range of
// audit export that cannot be exported (negative, empty or reversed) are
// usage errors (exit 2) that write nothing and ask the broker nothing.
func TestAuditUsageErrors(t *testing.T) {
	var requests int
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests++
		_, _ = w.Write([]byte("{}\n"))
	}))
	dir := t.TempDir()
	for _, args := range [][]string{
		{"keygen", "--bogus"},
		{"keygen", "--name"},
		{"keygen", "--name", "evidence.example.com/jane", "-o", filepath.Join(dir, "k"), "extra"},
		{"export", "-o", filepath.Join(dir, "b"), "--from", "10", "--to", "5"},
		{"export", "-o", filepath.Join(dir, "b"), "--from", "5", "--to", "5"},
		{"export", "-o", filepath.Join(dir, "b"), "--from", "-3"},
		{"export", "-o", filepath.Join(dir, "b"), "--to", "-1"},
	} {
		if code, _, errOut := c.run("", append([]string{"audit"}, args...)...); code != 2 {
			t.Errorf("audit %s: exit %d, %q; want a usage error (exit 2)", strings.Join(args, " "), code, errOut)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || requests != 0 {
		t.Errorf("refused commands wrote %d files and sent %d requests, want none", len(entries), requests)
	}
	c.must("", "audit", "export", "-o", filepath.Join(dir, "b"), "--from", "5", "--to", "6")
	c.must("", "audit", "keygen", "--name", "evidence.example.com/jane", "-o", filepath.Join(dir, "k"))
}

// TestAuditVerifyNeedsATrustedKey: verify without --key would accept a log
// re-signed by whoever can write it, so it is a usage error that says why;
// --no-trusted-key checks self-consistency only, says so on stdout and in
// the JSON, and still fails an inconsistent log.
func TestAuditVerifyNeedsATrustedKey(t *testing.T) {
	bundle, _, keys := twoInstanceBundle(t, 0)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	code, out, errOut := c.run("", "audit", "verify", "--bundle", bundle)
	if code != 2 || !strings.Contains(errOut, "--key or --keys-file is required: without a trusted key anyone who can write the log can re-sign it") || out != "" {
		t.Errorf("verify without a key: exit %d, stdout %q, stderr %q; want 2 and why", code, out, errOut)
	}
	if code, _, errOut := c.run("", "audit", "verify", "--bundle", bundle, "--no-trusted-key", "--key", keys["sqlgate.test/a"]); code != 2 || !strings.Contains(errOut, "exclude each other") {
		t.Errorf("--no-trusted-key with --key: exit %d, %q; want a usage error", code, errOut)
	}

	out = c.must("", "audit", "verify", "--bundle", bundle, "--no-trusted-key")
	if !strings.Contains(out, "OK") || !strings.Contains(out, "WARNING: NO TRUSTED KEY USED") || !strings.Contains(out, "anyone who can write the log can re-sign it") {
		t.Errorf("self-consistency check: stdout %q; want OK and a loud warning", out)
	}
	var rep struct {
		OK             bool `json:"ok"`
		TrustedKey     bool `json:"trusted_key"`
		KeysFromSource bool `json:"keys_from_source"`
	}
	if err := json.Unmarshal([]byte(c.must("", "audit", "verify", "--bundle", bundle, "--no-trusted-key", "--output", "json")), &rep); err != nil ||
		!rep.OK || rep.TrustedKey || !rep.KeysFromSource {
		t.Errorf("self-consistency JSON = %+v, %v; want ok, trusted_key false", rep, err)
	}
	if err := json.Unmarshal([]byte(c.must("", "audit", "verify", "--bundle", bundle, "--key", keys["sqlgate.test/a"], "--key", keys["sqlgate.test/b"], "--output", "json")), &rep); err != nil ||
		!rep.OK || !rep.TrustedKey {
		t.Errorf("JSON with keys = %+v, %v; want ok, trusted_key true", rep, err)
	}

	// An edited record is inconsistent even with the log's own keys.
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(data, []byte("sqlgate.test/a 3"), []byte("sqlgate.test/a X"), 1)
	if bytes.Equal(edited, data) {
		t.Fatal("the bundle has no record to edit")
	}
	if err := os.WriteFile(bundle, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := c.run("", "audit", "verify", "--bundle", bundle, "--no-trusted-key"); code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "NO TRUSTED KEY USED") {
		t.Errorf("self-consistency check of an edited log: exit %d, %q; want 1 and FAILED", code, out)
	}
}
