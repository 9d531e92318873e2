package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the browser for the dashboard tests: $SQLGATE_TEST_CHROMIUM,
// else chromium on PATH. Without one the tests skip, naming the variable
// (.ci/run installs Debian's chromium and sets it).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SQLGATE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: set SQLGATE_TEST_CHROMIUM (apt-get install chromium) to run the browser tests")
	return ""
}

// browser opens a fresh headless Chromium profile.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// signIn runs the dashboard's OIDC sign-in through the dev provider's form.
func signIn(ctx context.Context, t *testing.T, s *devStack, user string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.st.HTTPURL+"/"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), s.password(t, user)),
		chromedp.Click(chromedp.CSS(`button[value="login"]`)),
		chromedp.WaitVisible(chromedp.CSS("#who")),
	)
	if err != nil {
		t.Fatalf("sign in as %s: %v", user, err)
	}
}

func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// TestDashboard drives the web UI in headless Chromium as the demo users
// would: sign in, see routes and credentials, revoke one, verify the audit
// log, evaluate a policy, sign out.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests: skipped with -short")
	}
	path := chromium(t)
	s := startDev(t, t.TempDir())

	t.Run("alice_routes_and_revoke", func(t *testing.T) {
		ctx := browser(t, path)
		// A credential to show and revoke.
		alice, _ := s.login(t, "alice")
		_, cred, _ := s.natsUser(t, alice, 0)
		key := userKeyOf(t, cred.JWT)

		signIn(ctx, t, s, "alice")
		if who := text(ctx, t, "#who"); who != "alice@example.com" {
			t.Errorf("signed in as %q", who)
		}
		routes := text(ctx, t, "#routes")
		for _, r := range []string{"orders.v1.create", "orders.v1.get", "orders.v1.cancel"} {
			if !strings.Contains(routes, r) {
				t.Errorf("routes section lacks %s:\n%s", r, routes)
			}
		}
		// The parameter schemas are laid out for reading and stay inside the
		// page: a one-line schema once widened the table past its card.
		if schema := text(ctx, t, "#routes td pre"); !strings.Contains(schema, "\n  \"additionalProperties\": false,") {
			t.Errorf("parameter schema not indented:\n%s", schema)
		}
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const c = document.querySelector("#routes"); return c.scrollWidth > c.clientWidth })()`))
		if err != nil || overflow {
			t.Errorf("the routes card overflows its width (%v)", err)
		}
		if strings.Contains(text(ctx, t, "body"), "Audit") {
			t.Error("alice (sales) sees the audit page link")
		}
		sel := `form[action="/leases/` + key + `/revoke"] button`
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)), chromedp.WaitVisible(chromedp.CSS("#flash"))); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		if flash := text(ctx, t, "#flash"); !strings.Contains(flash, "revoked") {
			t.Errorf("flash = %q", flash)
		}
		iss, err := s.registryGet(t, key)
		if err != nil || iss.RevokedAt.IsZero() {
			t.Errorf("credential not revoked: %+v, %v", iss, err)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login"))); err != nil {
			t.Fatalf("sign out: %v", err)
		}
	})

	t.Run("carol_verifies_audit", func(t *testing.T) {
		ctx := browser(t, path)
		signIn(ctx, t, s, "carol")
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS("#nav-audit")),
			chromedp.WaitVisible(chromedp.CSS("#checkpoint")),
			chromedp.Click(chromedp.CSS("#verify")),
			chromedp.WaitVisible(chromedp.CSS("#verify-result")),
		); err != nil {
			t.Fatal(err)
		}
		if got := text(ctx, t, "#verify-result"); !strings.Contains(got, "Intact") || !strings.Contains(got, "OK") {
			t.Errorf("verify result = %q", got)
		}
		if recs := text(ctx, t, "#records"); !strings.Contains(recs, "credential") {
			t.Errorf("recent records lack the credential records:\n%s", recs)
		}
		// The evidence form, filled with yesterday and tomorrow, asks for a
		// zip with the session's cookie.
		from, to := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS("#evidence-from"), from),
			chromedp.SetValue(chromedp.CSS("#evidence-to"), to),
		); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
			const f = document.querySelector('#evidence form');
			const u = new URL(f.action);
			new FormData(f).forEach((v, k) => u.searchParams.set(k, v));
			const r = await fetch(u, {credentials: 'same-origin'});
			const b = new Uint8Array(await r.arrayBuffer());
			return r.status + ' ' + r.headers.get('content-type') + ' ' + String.fromCharCode(b[0], b[1]);
		})()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if got != "200 application/zip PK" {
			t.Errorf("evidence download = %q, want a zip", got)
		}
	})

	t.Run("dave_evaluates_policy", func(t *testing.T) {
		ctx := browser(t, path)
		signIn(ctx, t, s, "dave")
		input := `{"principal":{"issuer":"x","subject":"s","groups":["sales"],"roles":[],"mfa":false,"service":false,"auth_time":0},` +
			`"route":{"subject":"orders.v1.create","kind":"statement","target":"create_order","database":"orders","mode":"sync","tags":[]},` +
			`"params":{"customer":"ACME","amount":5000}}`
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS("#nav-policy")),
			chromedp.WaitVisible(chromedp.CSS("#eval-input")),
			chromedp.SetValue(chromedp.CSS("#eval-input"), input),
			chromedp.Click(chromedp.CSS("#eval-submit")),
			chromedp.WaitVisible(chromedp.CSS("#eval-result")),
		); err != nil {
			t.Fatal(err)
		}
		if got := text(ctx, t, "#eval-result"); !strings.Contains(got, "deny") || !strings.Contains(got, "5000") {
			t.Errorf("eval result = %q, want a deny naming the amount", got)
		}
	})

	t.Run("bob_cannot_open_audit", func(t *testing.T) {
		ctx := browser(t, path)
		signIn(ctx, t, s, "bob")
		if err := chromedp.Do(ctx, chromedp.Navigate(s.st.HTTPURL+"/audit"), chromedp.WaitVisible(chromedp.CSS("#error"))); err != nil {
			t.Fatal(err)
		}
		if got := text(ctx, t, "#error"); !strings.Contains(got, "auditors") {
			t.Errorf("error page = %q", got)
		}
	})
}
