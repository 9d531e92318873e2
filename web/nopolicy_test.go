package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// TestNoPolicyIsNamed: while no policy is loaded (the first load failed),
// a signed-in caller is told that, not that "a backing service" is
// unavailable, by the API (what `sqlgate routes` prints) and the dashboard;
// why the policy failed to load is not theirs to read.
func TestNoPolicyIsNamed(t *testing.T) {
	s, fb := newTestServer(t, false)
	// What the engine returns (web joins it with broker.ErrUnavailable).
	fb.routesErr = fmt.Errorf("decide nats: %w", policy.ErrNoPolicy)

	rec := do(t, s, "GET", "/api/v1/routes", "", map[string]string{"Authorization": "Bearer token-alice"})
	var body api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET /api/v1/routes = %d %s", rec.Code, rec.Body)
	}
	if rec.Code != http.StatusServiceUnavailable || body.Error.Code != "unavailable" ||
		!strings.HasPrefix(body.Error.Message, "no policy is loaded, so every request is denied until it loads") {
		t.Errorf("GET /api/v1/routes = %d %+v, want 503 unavailable saying no policy is loaded", rec.Code, body.Error)
	}
	if strings.Contains(rec.Body.String(), "backing service") || strings.Contains(rec.Body.String(), "decide nats") {
		t.Errorf("body %s blames a backing service or shows the internal error", rec.Body)
	}

	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "alice"}, time.Now().Add(time.Hour))
	rec = do(t, s, "GET", "/", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id})
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "no policy is loaded, so every request is denied until it loads") {
		t.Errorf("dashboard = %d, want it to say no policy is loaded:\n%s", rec.Code, rec.Body)
	}

	// Any other failure is still the generic answer.
	fb.routesErr = fmt.Errorf("decide nats: %w", policy.ErrEvaluation)
	if rec := do(t, s, "GET", "/api/v1/routes", "", map[string]string{"Authorization": "Bearer token-alice"}); rec.Code != http.StatusServiceUnavailable ||
		!strings.Contains(rec.Body.String(), "a backing service is unavailable") {
		t.Errorf("GET /api/v1/routes on an evaluation error = %d %s", rec.Code, rec.Body)
	}
}
