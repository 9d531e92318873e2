package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReadyzHidesDetail: the unauthenticated /readyz names the components
// that are not ready and nothing else; the details (hosts, logins, file
// paths) go to the log when readiness changes and at most once a minute
// while it does not.
func TestReadyzHidesDetail(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	dbErr := errors.New(`failed to connect to user=sqlgate_admin database=sqlgate: 10.1.2.3:5432: password authentication failed`)
	policyErr := errors.New("policy reload failed (revision 4f2a keeps serving): /etc/sqlgate/policy/sqlgate.rego:7: rego_parse_error: unexpected eof")
	var problems []NotReady
	logs := &logBuffer{}
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{},
		Ready:  func(context.Context) []NotReady { return problems },
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	probe := func(t *testing.T, wantStatus int, want readyResponse) {
		t.Helper()
		rec := do(t, s, "GET", "/readyz", "", nil)
		var got readyResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("GET /readyz body %q: %v", rec.Body, err)
		}
		if rec.Code != wantStatus {
			t.Errorf("GET /readyz = %d, want %d", rec.Code, wantStatus)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET /readyz body (-want +got):\n%s", diff)
		}
		for _, secret := range []string{"10.1.2.3", "sqlgate_admin", "/etc/sqlgate", "rego_parse_error", "4f2a"} {
			if strings.Contains(rec.Body.String(), secret) {
				t.Errorf("GET /readyz shows %q: %s", secret, rec.Body)
			}
		}
	}
	logged := func(s string) int { return strings.Count(logs.String(), s) }
	notReady := readyResponse{Status: "not ready", NotReady: []string{"control database", "policy"}}

	problems = []NotReady{{Component: "control database", Err: dbErr}, {Component: "policy", Err: policyErr}}
	probe(t, http.StatusServiceUnavailable, notReady)
	if logged("10.1.2.3:5432") != 1 || logged("sqlgate.rego:7") != 1 {
		t.Fatalf("first failing probe did not log each detail once:\n%s", logs)
	}
	now = now.Add(59 * time.Second)
	probe(t, http.StatusServiceUnavailable, notReady)
	if logged("10.1.2.3:5432") != 1 {
		t.Errorf("an unchanged state was logged again within a minute:\n%s", logs)
	}
	now = now.Add(time.Second)
	probe(t, http.StatusServiceUnavailable, notReady)
	if logged("10.1.2.3:5432") != 2 || logged("sqlgate.rego:7") != 2 {
		t.Errorf("a state still failing after a minute was not logged again:\n%s", logs)
	}
	// The database is back: a change, logged at once.
	problems = problems[1:]
	probe(t, http.StatusServiceUnavailable, readyResponse{Status: "not ready", NotReady: []string{"policy"}})
	if logged("sqlgate.rego:7") != 3 || logged("10.1.2.3:5432") != 2 {
		t.Errorf("a change of readiness was not logged:\n%s", logs)
	}
	problems = nil
	probe(t, http.StatusOK, readyResponse{Status: "ready", Ready: true})
	probe(t, http.StatusOK, readyResponse{Status: "ready", Ready: true})
	if logged(`"msg":"ready"`) != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", logged(`"msg":"ready"`), logs)
	}
}

// TestReadyzLogNamesTheCheck: the "not ready" line names what is not ready
// under a key of its own, check, with the logger's component (web, as
// sqlgated passes it) once: it used to repeat the key component, and a
// log query on component=web or component=policy saw one or the other.
func TestReadyzLogNamesTheCheck(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{},
		Ready: func(context.Context) []NotReady {
			return []NotReady{{Component: "control database", Err: errors.New("connection refused")}}
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)).With("component", "web"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(t, s, "GET", "/readyz", "", nil); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz = %d, want 503", rec.Code)
	}
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, `msg="not ready"`) {
			line = l
		}
	}
	if !strings.Contains(line, `check="control database"`) || strings.Count(line, "component=") != 1 || !strings.Contains(line, "component=web") {
		t.Errorf("the not ready line = %q, want component=web once and check=\"control database\"", line)
	}
}
