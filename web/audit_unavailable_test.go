package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
)

// failedAuditDetail is what a failed log's error carries that no client
// may see (an origin, a host, SQL).
const failedAuditDetail = `audit origin "sqlgate/rv-1" is in use by another session (PostgreSQL backend pid 4242, client 10.1.2.3)`

// failedAudit is the audit service of an instance whose log failed: every
// read or download that needs it fails with the store's error.
type failedAudit struct{}

func errFailedAudit() error {
	return fmt.Errorf("audit append: reload after failed write: load audit log: sqlstore load: %w", errors.New(failedAuditDetail))
}

func (failedAudit) Recent(context.Context, int) ([]audit.Record, error) {
	return nil, errFailedAudit()
}

func (failedAudit) Record(context.Context, int64) (*audit.Record, error) {
	return nil, errFailedAudit()
}

func (failedAudit) Checkpoint(context.Context) ([]byte, error) { return nil, errFailedAudit() }

func (failedAudit) Verify(context.Context, int64, int64) (VerifyReport, error) {
	return VerifyReport{}, errFailedAudit()
}

func (failedAudit) Proof(context.Context, int64) (json.RawMessage, error) {
	return nil, errFailedAudit()
}

func (failedAudit) Inputs(context.Context, time.Time, io.Writer) error { return errFailedAudit() }

func (failedAudit) Export(context.Context, io.Writer, int64, int64, []int64) error {
	return errFailedAudit()
}

func (failedAudit) Evidence(context.Context, io.Writer, time.Time, time.Time) error {
	return errFailedAudit()
}

// TestAuditUnavailable: while the audit log or its store fails, its
// endpoints answer 503 unavailable with a message that says so, like every
// other outage (`sqlgate audit verify` printed "internal error (HTTP
// 500)"), and never the failure's detail. The dashboard's audit page does
// the same.
func TestAuditUnavailable(t *testing.T) {
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: failedAudit{}, Policy: fakePolicy{},
		AdminGroups: []string{"sales"}, AuditorGroups: []string{"sales"}, // tokenAuth puts everyone in sales
	})
	if err != nil {
		t.Fatal(err)
	}
	bearer := map[string]string{"Authorization": "Bearer token-alice"}
	for _, path := range []string{
		"/api/v1/audit/export",
		"/api/v1/audit/records",
		"/api/v1/audit/verify",
		"/api/v1/audit/evidence?from=2026-10-01&to=2026-11-01",
		"/api/v1/audit/checkpoint",
		"/api/v1/audit/proof?index=1",
		"/api/v1/policy/inputs",
	} {
		rec := do(t, s, "GET", path, "", bearer)
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("GET %s: body is not a JSON error: %v\n%s", path, err, rec.Body)
			continue
		}
		if rec.Code != http.StatusServiceUnavailable || body.Error.Code != broker.CodeUnavailable || !strings.Contains(body.Error.Message, "the audit log is unavailable") {
			t.Errorf("GET %s = %d %s, want 503 unavailable saying the audit log is unavailable", path, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "rv-1") || strings.Contains(rec.Body.String(), "10.1.2.3") {
			t.Errorf("GET %s shows the failure's detail: %s", path, rec.Body)
		}
	}

	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"sales"}}, time.Now().Add(time.Hour))
	page := do(t, s, "GET", "/audit", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id})
	if page.Code != http.StatusServiceUnavailable || !strings.Contains(page.Body.String(), "the audit log is unavailable") || strings.Contains(page.Body.String(), "rv-1") {
		t.Errorf("audit page = %d, want 503 saying the audit log is unavailable\n%s", page.Code, page.Body)
	}
}

// TestAuditErrorsKeepTheirStatus: what the audit service says about the
// request itself is not an outage: an unknown record is 404, an archive
// refused for a log that does not verify keeps its own answer.
func TestAuditErrorsKeepTheirStatus(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("proof: %w", broker.ErrNotFound), http.StatusNotFound, broker.CodeNotFound},
		{&HTTPError{Status: http.StatusInternalServerError, Code: broker.CodeInternal, Msg: "no evidence: the log does not verify"}, http.StatusInternalServerError, broker.CodeInternal},
		{errors.New("sqlstore: connection refused"), http.StatusServiceUnavailable, broker.CodeUnavailable},
	} {
		status, body := publicError(auditFailure(tc.err))
		if status != tc.status || body.Code != tc.code {
			t.Errorf("publicError(auditFailure(%v)) = %d %s, want %d %s", tc.err, status, body.Code, tc.status, tc.code)
		}
	}
}
