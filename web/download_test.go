package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/web/api"
)

// failingAudit streams `sent` bytes of a download and then fails, as a
// store that loses its connection mid-export does.
type failingAudit struct {
	AuditService
	sent string
}

var errReset = errors.Join(broker.ErrUnavailable, errors.New("store: connection reset"))

func (f failingAudit) Export(_ context.Context, w io.Writer, _, _ int64, _ []int64) error {
	if f.sent != "" {
		_, _ = io.WriteString(w, f.sent)
	}
	return errReset
}

func (f failingAudit) Inputs(_ context.Context, _ time.Time, w io.Writer) error {
	if f.sent != "" {
		_, _ = io.WriteString(w, f.sent)
	}
	return errReset
}

func (f failingAudit) Evidence(_ context.Context, w io.Writer, _, _ time.Time) error {
	if f.sent != "" {
		_, _ = io.WriteString(w, f.sent)
	}
	return errReset
}

// TestDownloadFailsAfterStart: an export or input stream that fails after
// its first bytes breaks the transfer off (the client gets an error, not a
// 200 bundle with an error document appended), and the CLI's client reports
// the failure instead of saving a truncated bundle.
func TestDownloadFailsAfterStart(t *testing.T) {
	bundle := `{"format":"sqlgate-audit-bundle/v1"}` + "\n" + strings.Repeat(`{"record":"x"}`+"\n", 8000)
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: failingAudit{sent: bundle}, Policy: fakePolicy{},
		AdminGroups: []string{"sales"}, AuditorGroups: []string{"sales"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, err := api.NewClient(srv.URL, func(context.Context) (string, error) { return "token-alice", nil })
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.AuditExport(t.Context(), &out, 0, 0); err == nil {
		t.Errorf("a failed export is reported as a success (%d bytes saved)", out.Len())
	}
	if strings.Contains(out.String(), `"error"`) {
		t.Error("the export carries an error document as if it were part of the bundle")
	}

	for _, path := range []string{"/api/v1/audit/export", "/api/v1/policy/inputs"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer token-alice")
		resp, err := srv.Client().Do(req)
		if err != nil {
			continue // cut before the headers: a broken transfer too
		}
		body, rerr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if rerr == nil {
			t.Errorf("GET %s = %d, whole body read without error (%d bytes); want a broken transfer", path, resp.StatusCode, len(body))
		}
		if strings.Contains(string(body), `"error"`) {
			t.Errorf("GET %s appended an error document to the streamed body", path)
		}
	}
}

// TestDownloadFailsBeforeStart: an error before the first byte is an
// ordinary JSON error, without the attachment header that would make a
// browser save it as the bundle or the evidence archive.
func TestDownloadFailsBeforeStart(t *testing.T) {
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: failingAudit{}, Policy: fakePolicy{},
		AdminGroups: []string{"sales"}, AuditorGroups: []string{"sales"},
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	for _, path := range []string{"/api/v1/audit/export", "/api/v1/policy/inputs", "/api/v1/audit/evidence?from=2026-10-01&to=2026-11-01"} {
		rec := do(t, s, "GET", path, "", alice)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("GET %s = %d %s, want 503", path, rec.Code, rec.Body)
		}
		if cd := rec.Header().Get("Content-Disposition"); cd != "" {
			t.Errorf("GET %s error response has Content-Disposition %q", path, cd)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s error response has Content-Type %q", path, ct)
		}
		if got := errorBody(t, rec); got.Code != "unavailable" {
			t.Errorf("GET %s error code %q", path, got.Code)
		}
	}
}

// TestEvidenceSpooled: the evidence archive is built in a temporary file
// (not memory), served whole with its length, and the file is removed; an
// archive that fails half-built is an error, its partial file removed too.
func TestEvidenceSpooled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: fakeAudit{}, AuditorGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	rec := do(t, s, "GET", "/api/v1/audit/evidence?from=2026-10-01&to=2026-11-01", "", alice)
	want := "PK 2026-10-01T00:00:00Z 2026-11-01T00:00:00Z"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("evidence = %d %q, want 200 %q", rec.Code, rec.Body, want)
	}
	if rec.Header().Get("Content-Length") != "44" || !strings.Contains(rec.Header().Get("Content-Disposition"), "sqlgate-evidence-20261001T000000Z-20261101T000000Z.zip") {
		t.Errorf("headers %v", rec.Header())
	}
	half, _ := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: failingAudit{sent: "PK half"}, AuditorGroups: []string{"sales"}})
	if rec := do(t, half, "GET", "/api/v1/audit/evidence?from=2026-10-01&to=2026-11-01", "", alice); rec.Code != 503 || strings.Contains(rec.Body.String(), "PK half") {
		t.Errorf("half-built evidence = %d %q, want a 503 error without the partial archive", rec.Code, rec.Body)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

// rangeAudit answers verify with the range it was asked for.
type rangeAudit struct{ fakeAudit }

func (rangeAudit) Verify(_ context.Context, from, to int64) (VerifyReport, error) {
	return VerifyReport{OK: true, JSON: []byte(`{"ok":true}`)}, nil
}

func (rangeAudit) Export(_ context.Context, w io.Writer, _, _ int64, proofs []int64) error {
	_, err := fmt.Fprintf(w, "bundle, proofs from %v\n", proofs)
	return err
}

// TestAuditParamsValidated: record ranges, evidence periods and proof
// indexes outside what makes sense are refused with a 400 that says why,
// not answered with an empty result or a 500.
func TestAuditParamsValidated(t *testing.T) {
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: rangeAudit{}, AuditorGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	for _, tc := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/api/v1/audit/verify?from=10&to=2", 400, "to must be after from"},
		{"/api/v1/audit/verify?from=5&to=5", 400, "to must be after from"},
		{"/api/v1/audit/verify?from=-5", 400, "from must not be negative"},
		{"/api/v1/audit/verify?to=-1", 400, "to must not be negative"},
		{"/api/v1/audit/verify?from=2&to=10", 200, ""},
		{"/api/v1/audit/verify?from=2", 200, ""},
		{"/api/v1/audit/export?from=10&to=2", 400, "to must be after from"},
		{"/api/v1/audit/export?from=-1", 400, "from must not be negative"},
		{"/api/v1/audit/export?from=1&to=2", 200, ""},
		{"/api/v1/audit/evidence?from=0001-01-01&to=9999-12-31", 400, "from must be between 1970-01-01 and 2262-04-11"},
		{"/api/v1/audit/evidence?from=2026-01-01&to=9999-12-31", 400, "to must be between 1970-01-01 and 2262-04-11"},
		{"/api/v1/audit/evidence?from=1969-12-31T23:59:59Z&to=2026-01-01", 400, "from must be between"},
		{"/api/v1/audit/evidence?from=1970-01-01&to=2026-01-01", 200, ""},
		{"/api/v1/audit/evidence?from=1970-01-01&to=2262-04-11", 400, "to (2262-04-11T00:00:00Z) is in the future: the period must have ended"},
		{"/api/v1/audit/export?proofs=10,20", 200, ""},
		{"/api/v1/audit/export?proofs=10,x", 400, "proofs must be comma-separated tree sizes above 0"},
		{"/api/v1/audit/export?proofs=0", 400, "proofs must be comma-separated tree sizes above 0"},
		{"/api/v1/audit/proof?index=-1", 400, "index must not be negative"},
		{"/api/v1/audit/proof", 400, "index is required"},
		{"/api/v1/audit/proof?index=0", 200, ""},
	} {
		rec := do(t, s, "GET", tc.path, "", alice)
		if rec.Code != tc.status {
			t.Errorf("GET %s = %d %s, want %d", tc.path, rec.Code, rec.Body, tc.status)
			continue
		}
		if tc.msg != "" && !strings.Contains(errorBody(t, rec).Message, tc.msg) {
			t.Errorf("GET %s message %q, want %q", tc.path, errorBody(t, rec).Message, tc.msg)
		}
	}
	// The auditor's trusted sizes reach the export.
	if rec := do(t, s, "GET", "/api/v1/audit/export?proofs=10,20", "", alice); rec.Body.String() != "bundle, proofs from [10 20]\n" {
		t.Errorf("export with proofs: %s", rec.Body)
	}
}
