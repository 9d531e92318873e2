package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// prunedLog writes a log of origin a with a checkpoint after every record
// (29 records), keeps its checkpoint of size 10 in a directory as an
// auditor would, and prunes the records before 20 (retention shorter than
// the copies are kept). It returns the store, the copies' directory and
// the verifier key.
func prunedLog(t *testing.T) (*audittest.Store, string, string) {
	t.Helper()
	store := audittest.NewStore()
	clk := audittest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(t, originA)
	cfg.Now = clk.Now
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 28 {
		clk.Add(time.Minute)
		if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	cp, err := store.CheckpointAt(t.Context(), originA, 10)
	if err != nil {
		t.Fatal(err)
	}
	copies := writeFiles(t, map[string][]byte{"a/00000000000000000010.checkpoint": cp})
	if _, err := store.Prune(t.Context(), originA, 20); err != nil {
		t.Fatal(err)
	}
	_, vkey := audittest.Key(t, originA, 1)
	return store, copies, vkey
}

// exportAsk is one export request a test broker answered: its range and
// the tree sizes it was asked for proofs from.
type exportAsk struct {
	method   string
	from, to int64
	proofs   []int64
}

// bundleBroker serves the audit export of store as the broker does: records
// [from, to) with the consistency proofs from the sizes in the body of a
// POST ({"proofs":[…]}) or the proofs parameter of a GET. It records each
// request in asked.
func bundleBroker(t *testing.T, store *audittest.Store, asked *[]exportAsk) http.Handler {
	return withholdingBroker(t, store, asked, nil)
}

// withholdingBroker is bundleBroker giving no proof from the sizes in
// withhold: a broker that leaves a trusted copy without its proof.
func withholdingBroker(t *testing.T, store *audittest.Store, asked *[]exportAsk, withhold []int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/audit/export" {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		q := r.URL.Query()
		ask := exportAsk{method: r.Method}
		ask.from, _ = strconv.ParseInt(q.Get("from"), 10, 64)
		ask.to, _ = strconv.ParseInt(q.Get("to"), 10, 64)
		switch r.Method {
		case http.MethodPost:
			var body struct {
				Proofs []int64 `json:"proofs"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			ask.proofs = body.Proofs
		default:
			for _, p := range strings.Split(q.Get("proofs"), ",") {
				if n, err := strconv.ParseInt(p, 10, 64); err == nil {
					ask.proofs = append(ask.proofs, n)
				}
			}
		}
		*asked = append(*asked, ask)
		sizes := slices.DeleteFunc(slices.Clone(ask.proofs), func(n int64) bool { return slices.Contains(withhold, n) })
		w.Header().Set("Content-Type", "application/x-ndjson")
		if err := audit.WriteBundle(r.Context(), w, store, audit.BundleOptions{From: ask.from, To: ask.to, ProofSizes: sizes}); err != nil {
			t.Error(err)
		}
	})
}

// TestAuditVerifyChecksCopiesOlderThanTheBundle: the auditor's copy of
// size 10 precedes the first retained record (20). verify and export ask
// the broker for a consistency proof from its size, so the normal yearly
// workflow checks the copy; a bundle exported without it fails, naming the
// copy, instead of passing with "1 trusted copies checked" while it checked
// nothing.
func TestAuditVerifyChecksCopiesOlderThanTheBundle(t *testing.T) {
	store, copies, vkey := prunedLog(t)
	var asked []exportAsk
	c := signedInCLI(t, bundleBroker(t, store, &asked))

	out := c.must("", "audit", "verify", "--key", vkey, "--trusted-checkpoint", copies)
	if !strings.Contains(out, "OK") || !strings.Contains(out, "1 trusted copies checked") || len(asked) != 1 || !slices.Equal(asked[0].proofs, []int64{10}) {
		t.Errorf("verify from the broker: %s (exports asked: %+v); want OK with the copy checked through a proof from 10", out, asked)
	}

	dir := t.TempDir()
	plain, proven := filepath.Join(dir, "plain.bundle"), filepath.Join(dir, "proven.bundle")
	c.must("", "audit", "export", "-o", plain)
	c.must("", "audit", "export", "-o", proven, "--trusted-checkpoint", copies)
	if out := c.must("", "audit", "verify", "--bundle", proven, "--key", vkey, "--trusted-checkpoint", copies); !strings.Contains(out, "1 trusted copies checked") {
		t.Errorf("verify of a bundle exported with the copy's proof: %s", out)
	}
	code, out, _ := c.run("", "audit", "verify", "--bundle", plain, "--key", vkey, "--trusted-checkpoint", copies)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "unchecked_trusted_checkpoint") ||
		!strings.Contains(out, "the trusted checkpoint of size 10 precedes the first record the source holds (20)") || !strings.Contains(out, "0 trusted copies checked") {
		t.Errorf("verify of a bundle without the copy's proof: exit %d\n%s\nwant 1, naming the copy it could not check", code, out)
	}
}

// TestAuditVerifySaveCheckpoint: --save-checkpoint keeps the newest verified
// checkpoint where --trusted-checkpoint reads it, so "keep the checkpoint of
// an earlier verification" (docs/audit.md §8) is one flag; nothing is saved
// from a log that does not verify.
func TestAuditVerifySaveCheckpoint(t *testing.T) {
	bundle, store, keys := twoInstanceBundle(t, 0)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	both := []string{"--key", keys[originA], "--key", keys[originB]}
	saved := filepath.Join(t.TempDir(), "saved")
	out := c.must("", append([]string{"audit", "verify", "--bundle", bundle, "--save-checkpoint", saved}, both...)...)
	for _, o := range []string{originA, originB} {
		latest := newestCheckpoint(t, store, o)
		cp, err := audit.ParseCheckpoint(latest)
		if err != nil {
			t.Fatal(err)
		}
		path := (&audit.DirSink{Dir: saved}).Path(o, cp.Size)
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, latest) {
			t.Errorf("%s: saved %q, %v; want its newest checkpoint", o, got, err)
		}
		if !strings.Contains(out, "checkpoint of "+o+", size "+strconv.FormatInt(cp.Size, 10)+", saved to "+path) {
			t.Errorf("verify --save-checkpoint does not say where %s's checkpoint went:\n%s", o, out)
		}
	}
	out = c.must("", append([]string{"audit", "verify", "--bundle", bundle, "--trusted-checkpoint", saved}, both...)...)
	if strings.Count(out, "1 trusted copies checked") != 2 {
		t.Errorf("verify against the saved checkpoints:\n%s", out)
	}
	// A bundle given as --trusted-checkpoint is named for what it is.
	code, _, errOut := c.run("", append([]string{"audit", "verify", "--bundle", bundle, "--trusted-checkpoint", bundle}, both...)...)
	if code != 1 || !strings.Contains(errOut, "--trusted-checkpoint "+bundle+" is an audit bundle (verify it with --bundle), not a checkpoint") {
		t.Errorf("--trusted-checkpoint BUNDLE: exit %d, %q", code, errOut)
	}
	// Nothing is saved from a log that fails.
	failing := filepath.Join(t.TempDir(), "failing")
	code, out, _ = c.run("", "audit", "verify", "--bundle", bundle, "--key", keys[originA], "--save-checkpoint", failing)
	if _, err := os.Stat(failing); code != 1 || !os.IsNotExist(err) || !strings.Contains(out, "--save-checkpoint: nothing saved: the log did not verify") {
		t.Errorf("--save-checkpoint of a log that fails (b's key missing): exit %d, %v\n%s", code, err, out)
	}
}

// TestAuditVerifyJSONOnUnreadableBundle: with --output json, stdout is a
// JSON document even when the bundle cannot be read (it was empty), and the
// error names the line once ("open bundle: open bundle: line 75: EOF"
// before).
func TestAuditVerifyJSONOnUnreadableBundle(t *testing.T) {
	bundle, _, keys := twoInstanceBundle(t, 0)
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	broken := filepath.Join(t.TempDir(), "broken.bundle")
	if err := os.WriteFile(broken, []byte(lines[0]+"garbage\n"+strings.Join(lines[1:], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	code, out, errOut := c.run("", "audit", "verify", "--bundle", broken, "--key", keys[originA], "--key", keys[originB], "--output", "json")
	var res struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	want := broken + ": open bundle: line 2: not a line of an audit bundle"
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.OK || !strings.HasPrefix(res.Error, want) || !strings.Contains(errOut, want) {
		t.Errorf("verify --output json of an unreadable bundle: exit %d\nstdout %q\nstderr %q\nwant 1, a JSON document and the error naming line 2", code, out, errOut)
	}
	// A bundle that reads but fails is the report itself.
	cut := filepath.Join(t.TempDir(), "cut.bundle")
	if err := os.WriteFile(cut, data[:len(data)-20], 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = c.run("", "audit", "verify", "--bundle", cut, "--key", keys[originA], "--key", keys[originB], "--output", "json")
	var rep struct {
		OK       bool            `json:"ok"`
		Failures []audit.Problem `json:"failures"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || len(rep.Failures) == 0 ||
		rep.Failures[0].Code != audit.ProblemBadRecord || !strings.Contains(rep.Failures[0].Message, "of the bundle is cut off") {
		t.Errorf("verify --output json of a cut bundle: exit %d\n%s", code, out)
	}
}
