package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// evalPolicy answers evaluations as the daemon's adapter does: an input
// that is not a valid document is a 400, an input that says "boom" fails
// evaluation (a deny with the error), anything else is allowed.
type evalPolicy struct{ PolicyService }

func (evalPolicy) Status() PolicyStatus { return PolicyStatus{Revision: "r1"} }

func (evalPolicy) Eval(_ context.Context, _ policy.Entry, input []byte, _ bool) (policy.Decision, string, error) {
	switch {
	case strings.Contains(string(input), "invalid"):
		return policy.Decision{}, "", &HTTPError{Status: http.StatusBadRequest, Code: "invalid_request", Msg: "invalid input document: principal is required"}
	case strings.Contains(string(input), "boom"):
		return policy.Decision{ID: "d2", Revision: "r1"}, "", errors.New("policy evaluation failed: eval_conflict_error")
	}
	return policy.Decision{ID: "d1", Allow: true, Revision: "r1"}, "", nil
}

// TestPolicyEvalErrors: an input that is not decided is a 400 naming what
// is wrong, on the API and on the dashboard form (never an empty deny); an
// evaluation error is the deny it fell back to with the error beside it
// (the CLI exits 1 on it), not an explanation.
func TestPolicyEvalErrors(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Policy: evalPolicy{}, AdminGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	bearer := map[string]string{"Authorization": "Bearer token-alice"}
	api := func(input string) (int, map[string]any) {
		rec := do(t, s, "POST", "/api/v1/policy/eval", `{"entry":"call","input":{"x":"`+input+`"}}`, bearer)
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	if code, body := api("invalid"); code != http.StatusBadRequest || !strings.Contains(body["error"].(map[string]any)["message"].(string), "principal is required") {
		t.Errorf("API, invalid input: %d %v; want 400 naming the field", code, body)
	}
	if code, body := api("boom"); code != http.StatusOK || body["error"] != "policy evaluation failed: eval_conflict_error" || body["explanation"] != "" {
		t.Errorf("API, evaluation error: %d %v; want 200 with the deny and the error in error", code, body)
	}
	if code, body := api("fine"); code != http.StatusOK || body["error"] != nil {
		t.Errorf("API, decided: %d %v; want 200 without error", code, body)
	}

	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "alice", Groups: []string{"sales"}}, time.Now().Add(time.Hour))
	form := func(input string) (int, string) {
		body := url.Values{"csrf_token": {sess.csrf}, "entry": {"call"}, "input": {`{"x":"` + input + `"}`}}.Encode()
		rec := do(t, s, "POST", "/policy/eval", body, map[string]string{"Cookie": sessionCookie + "=" + sess.id, "Content-Type": "application/x-www-form-urlencoded"})
		return rec.Code, rec.Body.String()
	}
	if code, page := form("invalid"); code != http.StatusBadRequest || !strings.Contains(page, `id="eval-error"`) || !strings.Contains(page, "principal is required") || strings.Contains(page, `id="eval-result"`) {
		t.Errorf("form, invalid input: %d; want 400, the policy page naming the field and no decision:\n%s", code, page)
	}
	if code, page := form("boom"); code != http.StatusOK || !strings.Contains(page, "evaluation error: policy evaluation failed") || !strings.Contains(page, `id="eval-result"`) {
		t.Errorf("form, evaluation error: %d; want the deny and the error:\n%s", code, page)
	}
}
