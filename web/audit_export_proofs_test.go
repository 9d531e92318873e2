package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/web/api"
)

// TestAuditExportProofsInBody: the CLI asks for consistency proofs from
// the sizes of an auditor's trusted checkpoint copies, one per copy before
// the first exported record. In the URL (GET ?proofs=) a few thousand of
// them outgrew the 64 KiB header limit of sqlgated's listener and the
// export failed with a bare HTTP 431; in the body of a POST the most an
// export takes (audit.MaxProofSizes, of the largest sizes) reach it. More
// than that, a size that is not one, a body too large and sizes in the URL
// of a POST are refused, saying why.
func TestAuditExportProofsInBody(t *testing.T) {
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: rangeAudit{}, AuditorGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s)
	srv.Config.MaxHeaderBytes = 64 << 10 // as sqlgated's API listener
	srv.Start()
	defer srv.Close()
	c, err := api.NewClient(srv.URL, func(context.Context) (string, error) { return "token-alice", nil })
	if err != nil {
		t.Fatal(err)
	}

	sizes := make([]int64, audit.MaxProofSizes)
	for i := range sizes {
		sizes[i] = math.MaxInt64 - int64(i)
	}
	var got bytes.Buffer
	if err := c.AuditExportProofs(t.Context(), &got, 0, 0, sizes); err != nil || got.String() != fmt.Sprintf("bundle, proofs from %v\n", sizes) {
		t.Errorf("export with proofs from %d sizes = %v (%.80q…); want every size to reach the export", len(sizes), err, got.String())
	}

	var se *api.StatusError
	err = c.AuditExportProofs(t.Context(), &got, 0, 0, append(sizes, 1))
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Body.Message, fmt.Sprintf("proofs holds %d sizes, at most %d", len(sizes)+1, len(sizes))) {
		t.Errorf("export with proofs from %d sizes = %v; want 400, at most %d", len(sizes)+1, err, len(sizes))
	}
	err = c.AuditExportProofs(t.Context(), &got, 0, 0, []int64{10, -1})
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Body.Message, "proofs must be tree sizes above 0") {
		t.Errorf("export with a negative size = %v; want 400", err)
	}

	alice := map[string]string{"Authorization": "Bearer token-alice", "Content-Type": "application/json"}
	for _, tc := range []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/api/v1/audit/export?from=1&to=2", `{"proofs":[1]}`, 200, ""},
		{"/api/v1/audit/export?from=2&to=1", `{"proofs":[1]}`, 400, "to must be after from"},
		{"/api/v1/audit/export?proofs=1", `{"proofs":[1]}`, 400, "a POST gives proofs in its body"},
		{"/api/v1/audit/export", `{"proofs":["1"]}`, 400, "not valid JSON for this endpoint"},
		{"/api/v1/audit/export", `{"proofs":[1],"sizes":[2]}`, 400, "not valid JSON for this endpoint"},
		{"/api/v1/audit/export", `{"proofs":[` + strings.Repeat("1,", maxProofsBody/2) + `1]}`, 413, "request body exceeds"},
	} {
		rec := do(t, s, "POST", tc.path, tc.body, alice)
		if rec.Code != tc.status {
			t.Errorf("POST %s %.40q = %d %.200s, want %d", tc.path, tc.body, rec.Code, rec.Body, tc.status)
			continue
		}
		if tc.msg != "" && !strings.Contains(errorBody(t, rec).Message, tc.msg) {
			t.Errorf("POST %s %.40q message %q, want %q", tc.path, tc.body, errorBody(t, rec).Message, tc.msg)
		}
	}
	if rec := do(t, s, "POST", "/api/v1/audit/export", `{"proofs":[30,10]}`, alice); rec.Body.String() != "bundle, proofs from [30 10]\n" {
		t.Errorf("POST export: %s", rec.Body)
	}
	// Only auditors export.
	bob := map[string]string{"Authorization": "Bearer token-bob", "Content-Type": "application/json"}
	s2, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: rangeAudit{}, AuditorGroups: []string{"auditors"}})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(t, s2, "POST", "/api/v1/audit/export", `{"proofs":[10]}`, bob); rec.Code != http.StatusForbidden {
		t.Errorf("POST export by a non-auditor = %d, want 403", rec.Code)
	}
}
