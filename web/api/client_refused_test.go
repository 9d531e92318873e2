package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestWithSignInRefused: an authenticated call's 401 answer is what the
// caller's function makes of it; an unauthenticated call's stays a
// *StatusError, and the client WithSignInRefused was called on is as it was.
func TestWithSignInRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthenticated","message":"authentication required or token invalid"}}`))
	}))
	defer srv.Close()
	plain, err := api.NewClient(srv.URL, func(context.Context) (string, error) { return "tok", nil })
	if err != nil {
		t.Fatal(err)
	}
	errRefused := errors.New("sign in again")
	var got *api.StatusError
	c := plain.WithSignInRefused(func(se *api.StatusError) error { got = se; return errRefused })

	if _, err := c.WhoAmI(t.Context()); !errors.Is(err, errRefused) || got == nil || got.Status != http.StatusUnauthorized || got.Body.Code != "unauthenticated" {
		t.Errorf("WhoAmI = %v (refused got %+v), want the function's error for the 401", err, got)
	}
	if _, err := c.AuditCheckpoint(t.Context()); !errors.Is(err, errRefused) {
		t.Errorf("AuditCheckpoint = %v, want the function's error", err)
	}
	var se *api.StatusError
	if _, err := c.Discovery(t.Context()); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("Discovery (unauthenticated) = %v, want the 401 StatusError", err)
	}
	if _, err := plain.WhoAmI(t.Context()); !errors.As(err, &se) || errors.Is(err, errRefused) {
		t.Errorf("WhoAmI of the original client = %v, want the 401 StatusError", err)
	}
}
