package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web"
)

// busyLogin is a web.Login whose identity provider side refuses every
// sign-in as oidc.WebLogin does when too many are in progress.
type busyLogin struct{}

func (busyLogin) Start(http.ResponseWriter, *http.Request, string) error {
	return loginError(fmt.Errorf("web login: %w", oidc.ErrTooManyLogins))
}

func (busyLogin) Callback(http.ResponseWriter, *http.Request) (identity.Principal, string, error) {
	err := identity.Unauthenticated(oidc.ReasonTooManyLogins, oidc.ErrTooManyLogins)
	return identity.Principal{}, "", loginError(err)
}

type noBroker struct{}

func (noBroker) AllowedRoutes(context.Context, identity.Principal) ([]*route.Route, policy.Decision, error) {
	return nil, policy.Decision{}, broker.ErrUnavailable
}

func (noBroker) IssueNATS(context.Context, broker.NATSRequest) (*broker.NATSCredential, error) {
	return nil, broker.ErrUnavailable
}

func (noBroker) RevokeNATS(context.Context, identity.Principal, []string, string) error {
	return broker.ErrUnavailable
}

func (noBroker) RevokeAll(context.Context, identity.Principal, string, string) (*broker.RevokeAllResult, error) {
	return nil, broker.ErrUnavailable
}

type noAuth struct{}

func (noAuth) Verify(context.Context, string) (identity.Principal, error) {
	return identity.Principal{}, identity.Unauthenticated("test", nil)
}

// TestLoginTooManySignIns: when the dashboard refuses sign-ins because too
// many are in progress, the browser gets a 503 page that says to come back
// later, not a 500 or a 401.
func TestLoginTooManySignIns(t *testing.T) {
	t.Parallel()
	s, err := web.New(web.Config{Broker: noBroker{}, Auth: noAuth{}, Login: busyLogin{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/login", "/auth/callback?state=x&code=y"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "too many sign-ins are in progress") {
			t.Errorf("GET %s = %d %q, want 503 saying too many sign-ins are in progress", path, rec.Code, rec.Body)
		}
	}
}

// checkingExec is a database whose Check refuses some routes.
type checkingExec struct {
	broker.Executor
	fail map[string]error
}

func (c checkingExec) Check(_ context.Context, r *route.Route) error { return c.fail[r.Subject] }

// TestCheckRoutesAtStart: a route whose target cannot run is named in the
// log at start, as an error, or as a warning when the database is only not
// there yet; routes that can run say nothing.
func TestCheckRoutesAtStart(t *testing.T) {
	catalog, err := brokertest.Catalog("orders", brokertest.OrdersTargets())
	if err != nil {
		t.Fatal(err)
	}
	exec := checkingExec{Executor: brokertest.NewFake("orders", brokertest.OrdersProcs()), fail: map[string]error{
		brokertest.SubjectCreate: errors.New("procedure orders.create_order does not exist"),
		brokertest.SubjectGet:    fmt.Errorf("%w: connection refused", broker.ErrUnavailable),
	}}
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	if n := checkRoutes(t.Context(), catalog, map[string]broker.Executor{"orders": exec}, log); n != 2 {
		t.Errorf("checkRoutes = %d failures, want 2", n)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log:\n%s\nwant one line per failed route", out.String())
	}
	for _, want := range []string{"level=ERROR.*subject=" + brokertest.SubjectCreate + ".*does not exist", "level=WARN.*subject=" + brokertest.SubjectGet + ".*connection refused"} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("log:\n%s\nwant a line matching %s", out.String(), want)
		}
	}
}
