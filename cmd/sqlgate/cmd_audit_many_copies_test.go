package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// busyLog writes a log of origin a of quiet records under one checkpoint,
// then busy records with a checkpoint after each (a write-once sink of a
// busy log holds one a second), and copies those busy checkpoints into a
// directory as *.checkpoint files: the first `part` into its subdirectory
// part, the others into rest. It returns the store, the directory and the
// verifier key.
func busyLog(t *testing.T, quiet, busy, part int) (*audittest.Store, string, string) {
	t.Helper()
	store := audittest.NewStore()
	clk := audittest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(t, originA)
	cfg.Now = clk.Now
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range quiet + busy {
		if i >= quiet {
			clk.Add(time.Second)
		}
		if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
		if i+1 >= quiet {
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"part", "rest"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	for i := range busy {
		size := int64(quiet + 1 + i)
		cp, err := store.CheckpointAt(t.Context(), originA, size)
		if err != nil {
			t.Fatalf("checkpoint of size %d: %v", size, err)
		}
		sub := "part"
		if i >= part {
			sub = "rest"
		}
		if err := os.WriteFile(filepath.Join(dir, sub, fmt.Sprintf("%020d%s", size, audit.CheckpointExt)), cp, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, vkey := audittest.Key(t, originA, 1)
	return store, dir, vkey
}

// limitedCLI is signedInCLI against a broker whose request headers are
// bounded as sqlgated's API listener bounds them (64 KiB). Its calls
// verify a log of over 100,000 records against thousands of copies: 10
// to 20 s each under -race on 2 shared cores, past the usual 60 s cut-off
// when the machine is busier (TestAuditVerifyManyTrustedCopies failed with
// context deadline exceeded at a load average of 12), so they get five
// minutes.
func limitedCLI(t *testing.T, h http.Handler) *cli {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.MaxHeaderBytes = 64 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": srv.URL}, timeout: 5 * time.Minute}
	tok := oidc.Tokens{Issuer: "https://idp.test", ClientID: "sqlgate-cli", AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}
	if err := oidc.NewTokenStore(filepath.Join(c.home, "tokens")).Save(tokenName, tok); err != nil {
		t.Fatal(err)
	}
	e := &env{home: c.home}
	if err := e.saveState(&state{Broker: srv.URL, Issuer: tok.Issuer, ClientID: tok.ClientID, Principal: tok.Issuer + " alice"}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAuditVerifyManyTrustedCopies: a write-once sink of a busy log holds
// a copy a second, and the auditor passes the whole directory. With 8,000
// copies (a little over two hours) verify and export asked for their sizes
// in the URL of the export and the broker refused it (HTTP 431). They go in
// the request's body now, and with more than one export carries proofs for
// (audit.MaxProofSizes) the CLI first asks where the log's export starts
// and sends only the sizes below it: none for a log that holds every
// record, those below the first retained record of a pruned one. Every copy
// is checked; a copy below the first record that no proof reaches fails,
// named, and more of those than one export carries is an error before the
// download, not a verification that leaves some unchecked.
func TestAuditVerifyManyTrustedCopies(t *testing.T) {
	const quiet, part, busy = 100_000, 8_000, audit.MaxProofSizes + 2_000
	store, all, vkey := busyLog(t, quiet, busy, part)
	eight := filepath.Join(all, "part")
	var asked []exportAsk
	c := limitedCLI(t, bundleBroker(t, store, &asked))
	verify := func(copies string, n int) {
		t.Helper()
		out := c.must("", "audit", "verify", "--key", vkey, "--trusted-checkpoint", copies)
		if !strings.Contains(out, "OK") || !strings.Contains(out, fmt.Sprintf("%d trusted copies checked", n)) {
			t.Errorf("verify with %d trusted copies:\n%s\nwant OK, every copy checked", n, out)
		}
	}

	// The log holds every record: no copy needs a proof.
	verify(eight, part)
	asked = nil
	verify(all, busy)
	if len(asked) != 2 || asked[0].to != 1 || len(asked[1].proofs) != 0 {
		t.Errorf("exports asked with %d copies: %+v; want where the export starts (to 1), then the log without proofs", busy, asked)
	}

	// Retention pruned the records before 104,000: the 3,999 copies below
	// are checked through a consistency proof each, the others by hashing.
	const first = quiet + part/2
	if _, err := store.Prune(t.Context(), originA, first); err != nil {
		t.Fatal(err)
	}
	asked = nil
	verify(all, busy)
	var below []int64
	if len(asked) == 2 {
		below = asked[1].proofs
	}
	if len(below) != first-quiet-1 || slices.ContainsFunc(below, func(n int64) bool { return n >= first }) {
		t.Errorf("with %d copies, %d exports asked, the last for proofs from %d sizes; want where the export starts, then the %d sizes below %d only", busy, len(asked), len(below), first-quiet-1, first)
	}
	bundle := filepath.Join(t.TempDir(), "audit.bundle")
	asked = nil
	c.must("", "audit", "export", "-o", bundle, "--trusted-checkpoint", eight)
	if len(asked) != 1 || len(asked[0].proofs) != part {
		t.Errorf("export with %d copies asked %d exports; want one, for the proofs from every size", part, len(asked))
	}
	if out := c.must("", "audit", "verify", "--bundle", bundle, "--key", vkey, "--trusted-checkpoint", eight); !strings.Contains(out, fmt.Sprintf("%d trusted copies checked", part)) {
		t.Errorf("verify of the bundle exported with the copies' proofs:\n%s", out)
	}

	// A broker that gives no proof from one copy's size: that copy fails.
	const lost = quiet + 500
	withholding := limitedCLI(t, withholdingBroker(t, store, &asked, []int64{lost}))
	code, out, _ := withholding.run("", "audit", "verify", "--key", vkey, "--trusted-checkpoint", eight)
	want := fmt.Sprintf("the trusted checkpoint of size %d precedes the first record the source holds (%d)", lost, first)
	if code != 1 || !strings.Contains(out, "unchecked_trusted_checkpoint") || !strings.Contains(out, want) ||
		!strings.Contains(out, fmt.Sprintf("%d trusted copies checked", part-1)) {
		t.Errorf("verify without the proof from %d: exit %d\n%s\nwant 1, naming the copy: %s", lost, code, out, want)
	}

	// More copies below the first record than one export carries.
	const later = quiet + audit.MaxProofSizes + 1_001 // 11,000 copies below
	if _, err := store.Prune(t.Context(), originA, later); err != nil {
		t.Fatal(err)
	}
	asked = nil
	code, _, errOut := c.run("", "audit", "verify", "--key", vkey, "--trusted-checkpoint", all)
	want = fmt.Sprintf("too many trusted copies for one request: %d copies precede the first record the broker exports of their origin (%d of %s, whose export starts at record %d)",
		later-quiet-1, later-quiet-1, originA, later)
	if code != 1 || !strings.Contains(errOut, want) || len(asked) != 1 {
		t.Errorf("verify with %d copies below the first record: exit %d, %d exports asked\n%s\nwant 1, before the download: %s", later-quiet-1, code, len(asked), errOut, want)
	}
}

// TestAuditVerifyPrunedBetweenRequests: with more trusted copies than one
// export carries proofs for, the CLI asks where the export starts and then
// sends the sizes below it. Retention pruning in between moved the start
// past copies sent without a proof, and verification failed them as
// unchecked although the broker could prove them: the CLI notices and asks
// again from the new start. A log pruned before every request is an error
// that says to run again, not a verification with unchecked copies.
func TestAuditVerifyPrunedBetweenRequests(t *testing.T) {
	const quiet, busy = 1_000, audit.MaxProofSizes + 500
	store, all, vkey := busyLog(t, quiet, busy, 0)
	copies := filepath.Join(all, "rest")
	var asked []exportAsk
	// Each request first prunes to the next of the prunes set, if any is
	// left (the handler runs on the server's goroutines: mu guards them).
	var mu sync.Mutex
	var prunes []int64
	setPrunes := func(p ...int64) { mu.Lock(); prunes = p; mu.Unlock() }
	setPrunes(quiet+2_000, quiet+5_000)
	pruning := func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if len(prunes) > 0 {
				if _, err := store.Prune(r.Context(), originA, prunes[0]); err != nil {
					mu.Unlock()
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				prunes = prunes[1:]
			}
			mu.Unlock()
			inner.ServeHTTP(w, r)
		})
	}
	c := limitedCLI(t, pruning(bundleBroker(t, store, &asked)))
	out := c.must("", "audit", "verify", "--key", vkey, "--trusted-checkpoint", copies)
	if !strings.Contains(out, "OK") || !strings.Contains(out, fmt.Sprintf("%d trusted copies checked", busy)) {
		t.Errorf("verify with the log pruned between the CLI's requests:\n%s\nwant OK, every copy checked", out)
	}
	if len(asked) != 3 || len(asked[2].proofs) != 5_000-1 {
		var n []int
		for _, a := range asked {
			n = append(n, len(a.proofs))
		}
		t.Errorf("exports asked: %d, with proofs from %v sizes; want where the export starts, the export, then the export again with the %d sizes below %d", len(asked), n, 5_000-1, quiet+5_000)
	}

	bundle := filepath.Join(t.TempDir(), "audit.bundle")
	setPrunes(quiet+5_500, quiet+6_000)
	c.must("", "audit", "export", "-o", bundle, "--trusted-checkpoint", copies)
	if out := c.must("", "audit", "verify", "--bundle", bundle, "--key", vkey, "--trusted-checkpoint", copies); !strings.Contains(out, fmt.Sprintf("%d trusted copies checked", busy)) {
		t.Errorf("verify of the bundle exported while the log was pruned:\n%s", out)
	}

	setPrunes(quiet+6_100, quiet+6_200, quiet+6_300, quiet+6_400)
	code, _, errOut := c.run("", "audit", "verify", "--key", vkey, "--trusted-checkpoint", copies)
	if code != 1 || !strings.Contains(errOut, "retention pruned the log while it was exported, 3 times in a row") {
		t.Errorf("verify of a log pruned before every request: exit %d\n%s\nwant 1, saying to run again", code, errOut)
	}
}
