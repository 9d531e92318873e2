package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
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

// browser opens a fresh headless Chromium profile, with extra options
// after the defaults.
func browser(t *testing.T, path string, extra ...chromedp.ExecAllocatorOption) context.Context {
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
	opts = append(opts, extra...)
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

func attr(ctx context.Context, t *testing.T, sel, name string) string {
	t.Helper()
	a, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		t.Fatalf("read %s of %s: %v", name, sel, err)
	}
	return a.Value
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
		// The evidence form, filled with yesterday and today (a period must
		// have ended) and submitted by a click, downloads a zip of that
		// period that checks against the log's key with the session's
		// cookie.
		from, to := time.Now().UTC().AddDate(0, 0, -1), time.Now().UTC()
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS("#evidence-from"), from.Format(time.DateOnly)),
			chromedp.SetValue(chromedp.CSS("#evidence-to"), to.Format(time.DateOnly)),
		); err != nil {
			t.Fatal(err)
		}
		name, zipped := clickDownload(ctx, t, "#evidence-download")
		if want := "sqlgate-evidence-" + from.Format("20060102") + "T000000Z-" + to.Format("20060102") + "T000000Z.zip"; name != want {
			t.Errorf("evidence download named %q, want %q", name, want)
		}
		checked, err := evidence.Check(bytes.NewReader(zipped), int64(len(zipped)),
			evidence.CheckOptions{Keys: []string{s.st.AuditKey}, RequireSignature: true})
		if err != nil || checked.SignedBy == "" {
			t.Errorf("the downloaded evidence does not check: %+v, %v", checked, err)
		}
		// A period that ends before it starts comes back as the audit page,
		// signed in, with the reason under the form and the dates kept.
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS("#evidence-from"), to.Format(time.DateOnly)),
			chromedp.SetValue(chromedp.CSS("#evidence-to"), from.Format(time.DateOnly)),
			chromedp.Click(chromedp.CSS("#evidence-download")),
			chromedp.WaitVisible(chromedp.CSS("#evidence-error")),
		); err != nil {
			t.Fatalf("submit a backwards period: %v", err)
		}
		if got := text(ctx, t, "#evidence-error"); got != "from must be before to" {
			t.Errorf("evidence error = %q, want from must be before to", got)
		}
		if who := text(ctx, t, "#who"); who != "carol@example.com" || text(ctx, t, "#checkpoint") == "" {
			t.Errorf("the refused period is not shown on carol's audit page (signed in as %q)", who)
		}
		if got := attr(ctx, t, "#evidence-from", "value"); got != to.Format(time.DateOnly) {
			t.Errorf("the form lost its from date: %q", got)
		}
	})

	t.Run("dave_evaluates_policy", func(t *testing.T) {
		ctx := browser(t, path)
		signIn(ctx, t, s, "dave")
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#nav-policy")), chromedp.WaitVisible(chromedp.CSS("#eval-input"))); err != nil {
			t.Fatal(err)
		}
		// sales may create orders of up to 1000 (policy/rules/data.yaml).
		for _, tc := range []struct {
			amount           int
			want, class, why string
		}{
			{5000, "deny", "bad", "exceeds the sales limit of 1000"},
			{50, "allow", "ok", ""},
		} {
			input := `{"principal":{"issuer":"x","subject":"s","groups":["sales"],"roles":[],"mfa":false,"service":false,"auth_time":0},` +
				`"route":{"subject":"orders.v1.create","kind":"statement","target":"create_order","database":"orders","mode":"sync","tags":[]},` +
				`"params":{"customer":"ACME","amount":` + strconv.Itoa(tc.amount) + `}}`
			// The result of the previous evaluation stays visible until the
			// new page replaces it: wait for an element of the new document.
			if err := chromedp.Do(ctx,
				chromedp.SetValue(chromedp.CSS("#eval-input"), input),
				chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.previous = "1"`),
				chromedp.Click(chromedp.CSS("#eval-submit")),
				chromedp.WaitVisible(chromedp.CSS("html:not([data-previous]) #eval-result")),
			); err != nil {
				t.Fatal(err)
			}
			class := attr(ctx, t, "#eval-result", "class")
			verdict := text(ctx, t, "#eval-result strong")
			if got := text(ctx, t, "#eval-result"); verdict != tc.want || !strings.Contains(got, tc.why) {
				t.Errorf("amount %d: eval result = %q, want %s naming %q", tc.amount, got, tc.want, tc.why)
			}
			if !strings.Contains(" "+class+" ", " "+tc.class+" ") {
				t.Errorf("amount %d: the %s result has class %q, want %s", tc.amount, tc.want, class, tc.class)
			}
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

	t.Run("carol_sees_a_tampered_log", func(t *testing.T) {
		// An insider with SQL access turns an allowed decision (alice's
		// credential) into a denied one in the control database. Last: the
		// log stays broken.
		alice, _ := s.login(t, "alice")
		s.natsUser(t, alice, 0)
		tamperAuditRecord(t, s, `"allow":true`, `"allow":false`)
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
		class := attr(ctx, t, "#verify-result", "class")
		if got := text(ctx, t, "#verify-result strong"); got != "INTEGRITY FAILURE" {
			t.Errorf("verify of a tampered log says %q, want INTEGRITY FAILURE:\n%s", got, text(ctx, t, "#verify-result"))
		}
		if got := text(ctx, t, "#verify-result"); strings.Contains(got, "Intact") {
			t.Errorf("verify of a tampered log says Intact:\n%s", got)
		}
		if !strings.Contains(" "+class+" ", " bad ") || strings.Contains(" "+class+" ", " ok ") {
			t.Errorf("the failed verification has class %q, want bad", class)
		}
		// The evidence of a log that does not verify is refused on the
		// dashboard's error page, signed in, not as an archive or raw JSON.
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS("#evidence-from"), time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)),
			chromedp.SetValue(chromedp.CSS("#evidence-to"), time.Now().UTC().Format(time.DateOnly)),
			chromedp.Click(chromedp.CSS("#evidence-download")),
			chromedp.WaitVisible(chromedp.CSS("#error")),
		); err != nil {
			t.Fatalf("evidence of a tampered log: %v", err)
		}
		if got := text(ctx, t, "#error"); !strings.Contains(got, "no evidence: the audit log did not verify") {
			t.Errorf("evidence of a tampered log: error page = %q", got)
		}
		if who := text(ctx, t, "#who"); who != "carol@example.com" {
			t.Errorf("the evidence error page is not the signed-in dashboard (who = %q)", who)
		}
	})
}

// clickDownload clicks sel, which must start a download in the page (not
// navigate it), and returns the file name the server suggested and the
// file Chromium saved.
func clickDownload(ctx context.Context, t *testing.T, sel string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	events := true
	if _, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &events,
	}); err != nil {
		t.Fatal(err)
	}
	type outcome struct{ guid, name, failure string }
	done := make(chan outcome, 1)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var name string // written and read on the listener's goroutine only
	if err := chromedp.Listen(lctx, func(ev any) {
		var o outcome
		switch ev := ev.(type) {
		case *cdpbrowser.EventDownloadWillBegin:
			name = ev.SuggestedFilename
			return
		case *cdpbrowser.EventDownloadProgress:
			switch ev.State {
			case cdpbrowser.DownloadProgressStateCompleted:
				o = outcome{guid: ev.GUID, name: name}
			case cdpbrowser.DownloadProgressStateCanceled:
				o = outcome{failure: "the download was cancelled"}
			default:
				return
			}
		case *page.EventFrameNavigated:
			if ev.Frame.ParentID != "" {
				return
			}
			o = outcome{failure: "the page navigated to " + ev.Frame.URL + " instead of downloading"}
		default:
			return
		}
		select {
		case done <- o:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatal(err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatalf("clicking %s: no download: %v", sel, ctx.Err())
	}
	if o.failure != "" {
		t.Fatalf("clicking %s: %s:\n%s", sel, o.failure, text(ctx, t, "body"))
	}
	b, err := os.ReadFile(filepath.Join(dir, o.guid))
	if err != nil {
		t.Fatalf("the downloaded file: %v", err)
	}
	return o.name, b
}

// tamperAuditRecord replaces old with edited in the first audit record
// holding old, in the dev stack's control database, leaving its leaf hash
// as it was: what an insider with SQL access could do.
func tamperAuditRecord(t *testing.T, s *devStack, old, edited string) {
	t.Helper()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(s.dir, "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var origin string
	var idx int64
	var data []byte
	if err := db.QueryRowContext(t.Context(), "SELECT origin, idx, data FROM sqlgate_audit_records WHERE instr(CAST(data AS TEXT), ?) > 0 ORDER BY idx LIMIT 1", old).
		Scan(&origin, &idx, &data); err != nil {
		t.Fatalf("an audit record holding %s: %v", old, err)
	}
	execSQL(t, db, "UPDATE sqlgate_audit_records SET data = ? WHERE origin = ? AND idx = ?", bytes.Replace(data, []byte(old), []byte(edited), 1), origin, idx)
}
