package evidence_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

const origin = "sqlgate.test/evidence"

var day = func(d int, hour int) time.Time { return time.Date(2026, 3, d, hour, 0, 0, 0, time.UTC) }

// clock is the log's time, set by the test before each append.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

var (
	alice = &audit.Actor{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com", MFA: true, NATSUserKey: "UALICE"}
	allow = true
	deny  = false
)

// openLog opens a log in a new memory store whose clock the test sets,
// starting at start; checkpoints are hourly and heartbeats daily.
func openLog(tb testing.TB, start time.Time) (*audittest.Store, *audit.Log, *clock) {
	tb.Helper()
	store := audittest.NewStore()
	c := &clock{t: start}
	cfg := audittest.Config(tb, origin)
	cfg.Now, cfg.CheckpointInterval, cfg.Heartbeat = c.now, time.Hour, 24*time.Hour
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return store, l, c
}

// buildLog writes a log spanning 1 to 4 March; the period under test is
// 2 March. It returns the store and the verifier key.
func buildLog(t testing.TB) (*audittest.Store, string) {
	t.Helper()
	store, l, c := openLog(t, day(1, 9))
	add := func(at time.Time, r *audit.Record) int64 {
		t.Helper()
		c.set(at)
		i, err := l.Append(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	call := func(corr string) *audit.Record {
		return &audit.Record{
			Kind: audit.KindIntent, CorrelationID: corr, Actor: alice, Allow: &allow, Route: "orders.v1.create",
			TargetKind: "procedure", Target: "create_order", Params: map[string]string{"amount": "h1", "customer": "h2"},
			SQL: &audit.SQL{Server: "pg", Database: "orders", Outcome: "pending"},
		}
	}
	done := func(corr string, intent int64, txid string) *audit.Record {
		return &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: intent, Actor: alice, Route: "orders.v1.create",
			TargetKind: "procedure", Target: "create_order",
			SQL: &audit.SQL{Server: "pg", Database: "orders", Outcome: "commit", TransactionID: txid, Rows: 1, RowsAffected: 1}, Result: &audit.Result{Status: "ok", DurationUS: 900},
		}
	}
	cred := func(typ, action, key, lease string, expires time.Time) *audit.Record {
		return &audit.Record{
			Kind: audit.KindCredential, Actor: alice, Allow: &allow,
			Credential: &audit.Credential{Type: typ, Action: action, UserKey: key, LeaseID: lease, ExpiresAt: expires},
		}
	}

	add(day(1, 10), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "revision r1"}})
	in := add(day(1, 11), call("before"))
	add(day(1, 11), done("before", in, "100"))
	// 2 March: the period.
	add(day(2, 8), cred("nats", "issue", "UALICE", "", day(3, 8)))  // valid at the period's end
	add(day(2, 8), cred("sql", "issue", "", "lease-1", day(5, 0)))  // revoked below
	add(day(2, 8), cred("sql", "issue", "", "lease-2", day(2, 20))) // expired by the period's end
	add(day(1, 23), cred("nats", "issue", "UOLD", "", day(4, 0)))   // issued before the period, still valid
	in = add(day(2, 9), call("=HYPERLINK(\"http://evil\")"))        // a caller-chosen correlation id
	add(day(2, 9), done("=HYPERLINK(\"http://evil\")", in, "200"))
	add(day(2, 10), &audit.Record{
		Kind: audit.KindDecision, CorrelationID: "denied-1", Actor: alice, Allow: &deny, Entry: "call",
		Route: "orders.v1.create", Reasons: []string{"amount 5000 exceeds the sales limit of 1000"}, Result: &audit.Result{Status: "forbidden"},
	})
	add(day(2, 12), cred("sql", "revoke", "", "lease-1", time.Time{}))
	late := add(day(2, 23), call("late"))
	add(day(2, 23), call("unpaired"))
	add(day(3, 1), done("late", late, "300")) // after the period: still paired
	add(day(3, 2), call("after"))
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, vkey := audittest.Key(t, origin, 1)
	return store, vkey
}

func options(vkey string) evidence.Options {
	return evidence.Options{From: day(2, 0), To: day(3, 0), Verify: audit.VerifyOptions{Keys: []string{vkey}}, Generator: "test"}
}

// table reads a CSV file into rows keyed by column name.
func table(t *testing.T, data []byte) []map[string]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, name := range recs[0] {
			row[name] = r[i]
		}
		out = append(out, row)
	}
	return out
}

func column(rows []map[string]string, name string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[name])
	}
	return out
}

func TestWrite(t *testing.T) {
	store, vkey := buildLog(t)
	var buf bytes.Buffer
	m, err := evidence.Write(t.Context(), &buf, store, options(vkey))
	if err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, buf.Bytes())

	// The manifest on disk is the one returned, and lists every other file
	// with its hash and row count.
	var onDisk evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.Period.From != "2026-03-02T00:00:00Z" || onDisk.Period.To != "2026-03-03T00:00:00Z" || len(onDisk.Origins) != 1 || !onDisk.Verification.OK {
		t.Errorf("manifest = %+v", onDisk)
	}
	if len(onDisk.Files) != len(files)-1 || len(m.Files) != len(onDisk.Files) {
		t.Errorf("manifest lists %d files, archive has %d besides manifest.json", len(onDisk.Files), len(files)-1)
	}
	if _, signed := files["manifest.sig"]; signed {
		t.Error("an archive written without a signer has manifest.sig")
	}
	for _, f := range onDisk.Files {
		data, ok := files[f.Name]
		if !ok {
			t.Errorf("%s is in the manifest, not in the archive", f.Name)
			continue
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Errorf("%s: sha256 does not match the manifest", f.Name)
		}
		if strings.HasSuffix(f.Name, ".csv") && len(table(t, data)) != f.Rows {
			t.Errorf("%s: %d rows, manifest says %d", f.Name, len(table(t, data)), f.Rows)
		}
	}
	if pdf := files["report.pdf"]; !bytes.HasPrefix(pdf, []byte("%PDF-")) || !bytes.Contains(pdf[len(pdf)-64:], []byte("%%EOF")) {
		t.Errorf("report.pdf is not a PDF document (%d bytes)", len(pdf))
	}
	o := onDisk.Origins[0]
	if o.Origin != origin || o.End != o.CheckpointSize || o.PeriodFirst < 0 || o.PeriodLast <= o.PeriodFirst {
		t.Errorf("origin = %+v", o)
	}
	if !strings.Contains(string(files[o.Checkpoint]), origin+"\n") {
		t.Errorf("%s is not the origin's checkpoint:\n%s", o.Checkpoint, files[o.Checkpoint])
	}

	// Activity: the calls of 2 March only, each with its outcome, also when
	// the outcome came after the period; a call without one says so.
	activity := table(t, files["csv/activity.csv"])
	if got := column(activity, "correlation_id"); strings.Join(got, "|") != `'=HYPERLINK("http://evil")|late|unpaired` {
		t.Errorf("activity correlation ids = %q", got)
	}
	if got := column(activity, "sql_transaction_id"); strings.Join(got, "|") != "200|300|" {
		t.Errorf("activity transaction ids = %q", got)
	}
	if got := column(activity, "outcome"); strings.Join(got, "|") != "commit|commit|missing" {
		t.Errorf("activity outcomes = %q", got)
	}
	if p := activity[0]["param_hashes"]; p != "amount=h1 customer=h2" {
		t.Errorf("param_hashes = %q", p)
	}

	// Every row names a record that the log holds under that leaf hash.
	for _, name := range []string{"csv/activity.csv", "csv/denials.csv", "csv/credentials.csv", "csv/access_population.csv", "csv/changes.csv"} {
		for _, row := range table(t, files[name]) {
			checkRef(t, store, name, row)
		}
	}

	denials := table(t, files["csv/denials.csv"])
	if len(denials) != 1 || denials[0]["reasons"] != "amount 5000 exceeds the sales limit of 1000" || denials[0]["status"] != "forbidden" {
		t.Errorf("denials = %v", denials)
	}
	if got := column(table(t, files["csv/credentials.csv"]), "action"); strings.Join(got, "|") != "issue|issue|issue|revoke" {
		t.Errorf("credential actions in the period = %q", got)
	}
	// Valid at the period's end: the NATS credentials issued on 1 and 2
	// March; not the revoked lease, not the expired one.
	access := table(t, files["csv/access_population.csv"])
	if got := column(access, "user_key"); strings.Join(got, "|") != "UALICE|UOLD" {
		t.Errorf("access population user keys = %q (%v)", got, access)
	}
	if len(table(t, files["csv/changes.csv"])) != 0 {
		t.Errorf("changes: the policy load of 1 March is outside the period")
	}
	exceptions := table(t, files["csv/exceptions.csv"])
	if got := column(exceptions, "code"); !strings.Contains(strings.Join(got, " "), "unpaired_intent") {
		t.Errorf("exceptions = %v", exceptions)
	}
	if integrity := table(t, files["csv/integrity.csv"]); len(integrity) != 1 || integrity[0]["verdict"] != "ok" {
		t.Errorf("integrity = %v", integrity)
	}

	// The same log, keys and period give the same bytes, also when expired
	// credentials are dropped after every record while reading.
	defer evidence.SetSweepEvery(1)()
	var again bytes.Buffer
	if _, err := evidence.Write(t.Context(), &again, store, options(vkey)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("a second archive of the same log and period differs")
	}
}

// checkRef checks that a row's log_index holds a record with its leaf_hash.
func checkRef(t *testing.T, src audit.Source, file string, row map[string]string) {
	t.Helper()
	var idx int64
	if err := json.Unmarshal([]byte(row["log_index"]), &idx); err != nil {
		t.Fatalf("%s: log_index %q", file, row["log_index"])
	}
	found := false
	err := src.Records(t.Context(), row["log_origin"], idx, idx+1, func(_ int64, data []byte, _ *tlog.Hash) error {
		leaf := audit.LeafHash(data)
		found = hex.EncodeToString(leaf[:]) == row["leaf_hash"]
		return nil
	})
	if err != nil || !found {
		t.Errorf("%s: row names record %d with leaf %s, which the log does not hold (err %v)", file, idx, row["leaf_hash"], err)
	}
}

func TestWriteRefusesUnverifiedLog(t *testing.T) {
	store, vkey := buildLog(t)
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		r[4] = bytes.Replace(r[4], []byte("alice@example.com"), []byte("carol@example.com"), 1)
		return r, l, c
	})
	var buf bytes.Buffer
	_, err := evidence.Write(t.Context(), &buf, store, options(vkey))
	if !errors.Is(err, evidence.ErrNotVerified) || buf.Len() != 0 {
		t.Errorf("edited record: err = %v, %d bytes written", err, buf.Len())
	}

	// Another key than the log's is no trust at all.
	store, _ = buildLog(t)
	_, other := audittest.Key(t, origin, 2)
	if _, err := evidence.Write(t.Context(), &buf, store, options(other)); !errors.Is(err, evidence.ErrNotVerified) || buf.Len() != 0 {
		t.Errorf("wrong key: err = %v, %d bytes written", err, buf.Len())
	}
}

func TestWriteOptions(t *testing.T) {
	store, vkey := buildLog(t)
	noKeys := options(vkey)
	noKeys.Verify.Keys = nil
	backwards := options(vkey)
	backwards.From, backwards.To = backwards.To, backwards.From
	for name, opts := range map[string]evidence.Options{"no keys": noKeys, "backwards": backwards, "no period": {Verify: noKeys.Verify}} {
		var buf bytes.Buffer
		if _, err := evidence.Write(t.Context(), &buf, store, opts); err == nil || buf.Len() != 0 {
			t.Errorf("%s: err = %v, %d bytes written", name, err, buf.Len())
		}
	}
}

// rezip copies a zip, passing each file through edit (which may change or
// drop it: keep false), then appends extra files.
func rezip(t *testing.T, data []byte, edit func(name string, b []byte) (out []byte, keep bool), extra map[string][]byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	put := func(name string, b []byte) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	files := audittest.Unzip(t, data)
	for _, f := range zr.File {
		if b, keep := edit(f.Name, files[f.Name]); keep {
			put(f.Name, b)
		}
	}
	for name, b := range extra {
		put(name, b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestCheck checks archives as an auditor would: as written (signed and
// unsigned), then with every kind of tampering, each of which must be
// refused with the file it concerns named.
func TestCheck(t *testing.T) {
	store, vkey := buildLog(t)
	signer, _ := audittest.Key(t, origin, 1) // the log's own key, as the dashboard signs
	other, otherKey := audittest.Key(t, "sqlgate.test/someone-else", 9)
	write := func(s note.Signer) []byte {
		opts := options(vkey)
		opts.Signer = s
		var buf bytes.Buffer
		if _, err := evidence.Write(t.Context(), &buf, store, opts); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	check := func(data []byte, opts evidence.CheckOptions) (*evidence.CheckReport, error) {
		return evidence.Check(bytes.NewReader(data), int64(len(data)), opts)
	}
	trusted := evidence.CheckOptions{Keys: []string{vkey}}
	required := evidence.CheckOptions{Keys: []string{vkey}, RequireSignature: true}

	unsigned, signed := write(nil), write(signer)
	if again := write(signer); !bytes.Equal(again, signed) {
		t.Error("the same log, key and period gave two different signed archives")
	}
	rep, err := check(unsigned, trusted)
	if err != nil {
		t.Fatalf("unsigned archive: %v", err)
	}
	if rep.Files != len(rep.Manifest.Files) || rep.SignedBy != "" || len(rep.Checkpoints) != 1 || !strings.HasPrefix(rep.Checkpoints[0], origin+"+") {
		t.Errorf("unsigned archive: report = %+v", rep)
	}
	if _, err := check(unsigned, required); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("unsigned archive, signature required: err = %v", err)
	}
	rep, err = check(signed, required)
	if err != nil || !strings.HasPrefix(rep.SignedBy, origin+"+") {
		t.Fatalf("signed archive: report %+v, err %v", rep, err)
	}
	// The signature is not a checkpoint, even though the log's key made it.
	if _, err := audit.OpenCheckpoint(audittest.Unzip(t, signed)["manifest.sig"], mustVerifiers(t, vkey)); err == nil {
		t.Error("manifest.sig opens as a checkpoint")
	}

	// A manifest signed by a key nobody trusts: reported, refused when a
	// signature is required, accepted when the auditor names the key.
	bySomeone := write(other)
	if rep, err := check(bySomeone, trusted); err != nil || rep.SignedBy != "" || !strings.HasPrefix(rep.Untrusted, "sqlgate.test/someone-else+") {
		t.Errorf("untrusted signer: report %+v, err %v", rep, err)
	}
	if _, err := check(bySomeone, required); err == nil || !strings.Contains(err.Error(), "not a trusted key") {
		t.Errorf("untrusted signer, signature required: err = %v", err)
	}
	if rep, err := check(bySomeone, evidence.CheckOptions{Keys: []string{vkey}, SignerKeys: []string{otherKey}, RequireSignature: true}); err != nil || rep.SignedBy == "" {
		t.Errorf("signer named by the auditor: report %+v, err %v", rep, err)
	}

	// Tampering.
	files := audittest.Unzip(t, signed)
	var m evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	editCSV := func(name string, b []byte) ([]byte, bool) {
		if name == "csv/denials.csv" {
			return bytes.Replace(b, []byte("5000"), []byte("500"), 1), true
		}
		return b, true
	}
	// The edited CSV with a manifest whose hash was updated to match.
	forged := func(name string, b []byte) ([]byte, bool) {
		b, _ = editCSV(name, b)
		if name != "manifest.json" {
			return b, true
		}
		edited, _ := editCSV("csv/denials.csv", files["csv/denials.csv"])
		sum := sha256.Sum256(edited)
		for i := range m.Files {
			if m.Files[i].Name == "csv/denials.csv" {
				m.Files[i].SHA256 = hex.EncodeToString(sum[:])
			}
		}
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return append(out, '\n'), true
	}
	drop := func(target string) func(string, []byte) ([]byte, bool) {
		return func(name string, b []byte) ([]byte, bool) { return b, name != target }
	}
	same := func(_ string, b []byte) ([]byte, bool) { return b, true }
	otherCheckpoint := func(name string, b []byte) ([]byte, bool) {
		if name != "checkpoints/1.note" {
			return b, true
		}
		text := b[:bytes.LastIndex(b, []byte("\n\n"))+1]
		resigned, err := note.Sign(&note.Note{Text: string(text)}, other)
		if err != nil {
			t.Fatal(err)
		}
		return resigned, true
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		opts    evidence.CheckOptions
		wantErr string
	}{
		{"edited CSV", rezip(t, signed, editCSV, nil), trusted, "csv/denials.csv: SHA-256"},
		{"edited CSV and manifest, signed", rezip(t, signed, forged, nil), trusted, "manifest.sig signs another manifest"},
		{"edited CSV and manifest, signature dropped", rezip(t, signed, func(n string, b []byte) ([]byte, bool) {
			if n == "manifest.sig" {
				return nil, false
			}
			return forged(n, b)
		}, nil), required, "not signed"},
		{"file added", rezip(t, signed, same, map[string][]byte{"csv/extra.csv": []byte("a\n")}), trusted, "csv/extra.csv is not listed"},
		{"file removed", rezip(t, signed, drop("csv/exceptions.csv"), nil), trusted, "csv/exceptions.csv is listed in manifest.json but not in the archive"},
		{"VERIFY.md replaced", rezip(t, signed, func(n string, b []byte) ([]byte, bool) {
			if n == "VERIFY.md" {
				return []byte("trust me\n"), true
			}
			return b, true
		}, nil), trusted, "VERIFY.md: SHA-256"},
		{"report.xlsx edited", rezip(t, signed, func(n string, b []byte) ([]byte, bool) {
			if n == "report.xlsx" {
				b = bytes.Clone(b)
				b[len(b)/2] ^= 0x01
			}
			return b, true
		}, nil), trusted, "report.xlsx: SHA-256"},
		{"report.xlsx removed", rezip(t, signed, drop("report.xlsx"), nil), trusted, "report.xlsx is listed in manifest.json but not in the archive"},
		{"checkpoint by another key", rezip(t, unsigned, otherCheckpoint, nil), trusted, "checkpoints/1.note"},
		{"no manifest", rezip(t, signed, drop("manifest.json"), nil), trusted, "no manifest.json"},
		{"other log key", signed, evidence.CheckOptions{Keys: []string{otherKey}}, "checkpoints/1.note"},
		{"not a zip", []byte("PK not really"), trusted, "not a zip archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := check(tc.data, tc.opts)
			if !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want ErrBadArchive with %q", err, tc.wantErr)
			}
		})
	}
	if _, err := check(signed, evidence.CheckOptions{}); err == nil {
		t.Error("Check without keys succeeded")
	}
}

func mustVerifiers(t *testing.T, vkeys ...string) note.Verifiers {
	t.Helper()
	v, err := audit.NewVerifiers(vkeys...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzCheck feeds Check arbitrary archives, starting from a real signed
// one: it must never panic, and an archive it accepts must have every
// listed file matched and every checkpoint signed.
func FuzzCheck(f *testing.F) {
	store, vkey := buildLog(f)
	signer, _ := audittest.Key(f, origin, 1)
	opts := options(vkey)
	opts.Signer = signer
	var buf bytes.Buffer
	if _, err := evidence.Write(context.Background(), &buf, store, opts); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{vkey}})
		if err != nil {
			return
		}
		if rep.Files != len(rep.Manifest.Files) || len(rep.Checkpoints) != len(rep.Manifest.Origins) {
			t.Errorf("accepted an archive with %d of %d files matched and %d checkpoints for %d origins",
				rep.Files, len(rep.Manifest.Files), len(rep.Checkpoints), len(rep.Manifest.Origins))
		}
	})
}
