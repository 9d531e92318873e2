package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestLeasesListJSONEmpty: with no credentials, `leases list --output json`
// prints an empty list, not null, as the broker sent it.
func TestLeasesListJSONEmpty(t *testing.T) {
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"leases":[]}`))
	}))
	out := c.must("", "leases", "list", "--output", "json")
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &got); err != nil || string(got["leases"]) != "[]" {
		t.Errorf("leases list --output json = %s (%v), want \"leases\": []", strings.TrimSpace(out), err)
	}
}
