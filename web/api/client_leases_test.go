package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLeasesEmptyIsAList: Client.Leases of a caller without credentials is
// an empty list, which encodes as [] (not null).
func TestLeasesEmptyIsAList(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"leases":[]}`))
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, func(context.Context) (string, error) { return "tok", nil })
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(got); string(b) != `{"leases":[]}` {
		t.Errorf("Leases encodes as %s, want {\"leases\":[]}", b)
	}
}
