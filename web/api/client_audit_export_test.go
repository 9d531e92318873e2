package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestAuditExportProofsOlderBroker: the sizes to prove go in the body of a
// POST; a broker that serves the export by GET only (405, before POST
// export) is asked again with them in the URL, so a newer CLI still
// verifies against it.
func TestAuditExportProofsOlderBroker(t *testing.T) {
	var asked []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"/audit/export", func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, "GET "+r.URL.Query().Get("proofs"))
		_, _ = w.Write([]byte("bundle\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := shortLimits(t, srv)
	var got bytes.Buffer
	if err := c.AuditExportProofs(t.Context(), &got, 0, 0, []int64{10, 20}); err != nil || got.String() != "bundle\n" || !slices.Equal(asked, []string{"GET 10,20"}) {
		t.Errorf("export from a GET-only broker = %v, %q, asked %q; want the bundle, asked by GET with proofs=10,20", err, got.String(), asked)
	}

	// A current broker gets them in the body, once.
	asked = nil
	mux.HandleFunc("POST "+Prefix+"/audit/export", func(w http.ResponseWriter, r *http.Request) {
		var req AuditExportRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Query().Has("proofs") || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		b, _ := json.Marshal(req.Proofs)
		asked = append(asked, "POST "+string(b))
		_, _ = w.Write([]byte("bundle\n"))
	})
	got.Reset()
	if err := c.AuditExportProofs(t.Context(), &got, 0, 0, []int64{10, 20}); err != nil || got.String() != "bundle\n" || !slices.Equal(asked, []string{"POST [10,20]"}) {
		t.Errorf("export = %v, %q, asked %q; want the bundle, asked by POST with the sizes in the body", err, got.String(), asked)
	}
}
