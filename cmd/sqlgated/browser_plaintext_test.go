package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/internal/testnet"
)

// TestDashboardPlaintextSignIn runs the setup docs/operations.md documents
// for http.allowPlaintext: the dashboard's sign-in (identity.web) with an
// http:// publicURL on a host other than loopback. serve --check accepts it,
// serve starts with a warning, and a browser that reaches sqlgated by that
// name over plain HTTP signs in: its cookies are not Secure (a browser keeps
// no Secure cookie from a plain HTTP page). sqlgated serve used to exit at
// start ("dashboard sign-in: ... must be an absolute https URL").
func TestDashboardPlaintextSignIn(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests: skipped with -short")
	}
	path := chromium(t)
	ctx, cancel := context.WithCancel(context.Background())
	deps := startServeDeps(ctx, t, demoRoutes, "", nil)
	dir := deps.dir
	if err := createDemoDB(t.Context(), filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	httpAddr := testnet.FreeAddr(t)
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	// A name that is not loopback; the browser resolves it to the listener.
	const host = "sqlgate.internal.example"
	public := "http://" + host + ":" + port
	secret := rand.Text()
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Groups: []string{"sales"}}),
		devidp.WithClients(
			devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}},
			devidp.Client{ID: "sqlgate", Secret: secret, RedirectURIs: []string{public + "/auth/callback"}},
		))
	for name, content := range map[string]string{"web-client-secret": secret, "cookie.key": rand.Text() + rand.Text()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := serveConfig(dir, httpAddr, deps.natsAddr, idp.Issuer(), "  - sqlite:\n      name: orders\n      path: "+dir+"/orders.db")
	cfg = strings.Replace(cfg, "  listen: "+httpAddr+"\n", "  listen: "+httpAddr+"\n  publicURL: "+public+"\n  allowPlaintext: true\n", 1)
	cfg = strings.Replace(cfg, "    clientID: sqlgate-cli\n", fmt.Sprintf(`    clientID: sqlgate-cli
  web:
    issuer: dev
    clientID: sqlgate
    clientSecretFile: %[1]s/web-client-secret
    cookieKeyFile: %[1]s/cookie.key
`, dir), 1)
	if !strings.Contains(cfg, "allowPlaintext: true") || !strings.Contains(cfg, "  web:\n") {
		t.Fatalf("the configuration edits did not apply:\n%s", cfg)
	}
	cfgPath := filepath.Join(dir, "sqlgated.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var checkOut strings.Builder
	if err := run(t.Context(), []string{"serve", "--config", cfgPath, "--check"}, &checkOut, &checkOut); err != nil {
		t.Fatalf("serve --check: %v\n%s", err, checkOut.String())
	}

	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfgPath, "--log-level", "warn"}, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !t.Failed() {
			t.Errorf("serve: %v\n%s", err, logs)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("sqlgated serve exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sqlgated serve not ready:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := logs.String(); !strings.Contains(out, "dashboard sign-in over plain HTTP") || !strings.Contains(out, public+"/auth/callback") {
		t.Errorf("serve did not warn that the sign-in is plain HTTP:\n%s", out)
	}

	bctx := browser(t, path, chromedp.Flag("host-resolver-rules", "MAP "+host+" 127.0.0.1"))
	signIn(bctx, t, deps.userStack(public), "alice")
	if who := text(bctx, t, "#who"); who != "alice@example.com" {
		t.Errorf("signed in as %q", who)
	}
	if u, err := chromedp.Run(bctx, chromedp.Location()); err != nil || !strings.HasPrefix(u, public+"/") {
		t.Errorf("the dashboard is at %q (%v), want under %s", u, err, public)
	}
}
