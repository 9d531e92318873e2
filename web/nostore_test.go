package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
)

// storeAudit serves every audit endpoint.
type storeAudit struct{ fakeAudit }

func (storeAudit) Checkpoint(context.Context) ([]byte, error) { return []byte("checkpoint\n"), nil }

func (storeAudit) Recent(context.Context, int) ([]audit.Record, error) { return nil, nil }

func (storeAudit) Verify(context.Context, int64, int64) (VerifyReport, error) {
	return VerifyReport{OK: true, JSON: json.RawMessage(`{"ok":true}`)}, nil
}

func (storeAudit) Export(_ context.Context, w io.Writer, _, _ int64, _ []int64) error {
	_, err := io.WriteString(w, `{"format":"sqlgate-audit-bundle/v1"}`+"\n")
	return err
}

// TestSensitiveResponsesNotStored: the audit log's answers (checkpoint,
// records, verification, receipts, export bundle, evidence archive) and the
// recorded policy inputs carry Cache-Control: no-store, so that no browser
// or proxy cache keeps them for the next user of the machine.
func TestSensitiveResponsesNotStored(t *testing.T) {
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: storeAudit{}, Policy: fakePolicy{},
		AdminGroups: []string{"sales"}, AuditorGroups: []string{"sales"}, // tokenAuth puts everyone in sales
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/api/v1/audit/checkpoint",
		"/api/v1/audit/records",
		"/api/v1/audit/verify",
		"/api/v1/audit/proof?index=1",
		"/api/v1/audit/export",
		"/api/v1/audit/evidence?from=2026-10-01&to=2026-11-01",
		"/api/v1/policy/inputs",
	} {
		rec := do(t, s, "GET", path, "", map[string]string{"Authorization": "Bearer token-alice"})
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, rec.Code, rec.Body)
			continue
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("GET %s: Cache-Control %q, want no-store", path, got)
		}
	}
}
