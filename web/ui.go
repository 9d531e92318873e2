package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join":   strings.Join,
	"short":  func(s string) string { return clip(s, 16) },
	"indent": indentJSON,
	"who":    actorWho,
}).ParseFS(templateFS, "templates/*.html"))

// indentJSON lays out a JSON document (a route's parameter schema) two
// spaces per level, for reading; anything that is not JSON comes back as it
// was.
func indentJSON(doc []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return string(doc)
	}
	return b.String()
}

// page is the data every template gets.
type page struct {
	Title     string
	SignedIn  bool
	Principal identity.Principal
	CSRF      string
	LoginOK   bool
	// FreshLogin makes the error page's sign-in ask the identity provider
	// for a new authentication: the sign-in was refused (401), and the
	// provider's own session would give the same refused sign-in again.
	FreshLogin bool
	// ReturnTo is the page (a path on this site) the error page's sign-in
	// returns to; empty: the dashboard.
	ReturnTo  string
	Auditor   bool
	Admin     bool
	Error     string
	Reasons   []string
	RequestID string
	Flash     string

	Routes   []api.Route
	Revision string
	// Leases are the newest active credentials (at most dashboardActive)
	// and then the most recent others (at most dashboardOthers); MoreActive
	// and MoreOthers say that some were left out.
	Leases     []api.Lease
	MoreActive bool
	MoreOthers bool

	Checkpoint string
	Records    []audit.Record
	Verify     *VerifyReport
	// EvidenceFrom and EvidenceTo refill the evidence form, and
	// EvidenceError says why its period was refused.
	EvidenceFrom, EvidenceTo, EvidenceError string

	Policy      *PolicyStatus
	EvalEntry   string
	EvalInput   string
	EvalResult  *policy.Decision
	Explanation string
	// EvalError is why an input was not decided, or the evaluation error
	// EvalResult's deny fell back to.
	EvalError string
}

func (s *Server) uiRoutes() {
	m := s.mux
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(filesOnly{static})))
	m.Handle("GET /{$}", s.handle(s.uiIndex))
	m.Handle("GET /login", s.handle(s.uiLogin))
	m.Handle("GET /auth/callback", s.handle(s.uiCallback))
	m.Handle("POST /logout", s.handle(s.uiLogout))
	m.Handle("POST /leases/{id}/revoke", s.handle(s.uiRevoke))
	m.Handle("GET /audit", s.handle(s.uiAudit))
	m.Handle("POST /audit/verify", s.handle(s.uiAuditVerify))
	m.Handle("GET /audit/evidence", s.handle(s.uiAuditEvidence))
	m.Handle("GET /policy", s.handle(s.uiPolicy))
	m.Handle("POST /policy/eval", s.handle(s.uiPolicyEval))
}

// filesOnly serves the files of an fs.FS and no directory: a directory is
// not found, so that http.FileServerFS lists none.
type filesOnly struct{ fs.FS }

func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := file.Stat(); err != nil || st.IsDir() {
		_ = file.Close()
		return nil, fs.ErrNotExist
	}
	return file, nil
}

// newPage fills the common fields from the session, if any. The page is
// never nil: with an error (the session's sign-in was revoked, or that
// cannot be known) it is a signed-out page.
func (s *Server) newPage(r *http.Request, title string) (*page, *session, error) {
	sess, err := s.session(r)
	return s.pageFor(sess, title), sess, err
}

// pageFor fills the common fields from sess (nil: signed out).
func (s *Server) pageFor(sess *session, title string) *page {
	p := &page{Title: title, LoginOK: s.cfg.Login != nil}
	if sess != nil {
		p.SignedIn, p.Principal, p.CSRF = true, sess.principal, sess.csrf
		p.Auditor = s.inGroups(sess.principal, s.cfg.AuditorGroups)
		p.Admin = s.inGroups(sess.principal, s.cfg.AdminGroups)
	}
	return p
}

// formSession returns the session of a state-changing form post after
// checking its CSRF token.
func (s *Server) formSession(r *http.Request) (*session, error) {
	sess, err := s.session(r)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, identity.Unauthenticated("no session", nil)
	}
	if err := checkForm(r, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// checkForm reads a form post within its bound and checks its CSRF token
// against sess.
func checkForm(r *http.Request, sess *session) error {
	r.Body = http.MaxBytesReader(nil, r.Body, maxDocBody)
	if err := r.ParseForm(); err != nil {
		return badRequest("malformed form")
	}
	if !sess.checkCSRF(r) {
		return &HTTPError{Status: http.StatusForbidden, Code: broker.CodeForbidden, Msg: "missing or wrong CSRF token"}
	}
	return nil
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p *page) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	return templates.ExecuteTemplate(w, name, p)
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, msg string, reasons []string, id string) {
	// The session as the handler found it (no second query of the cutoff
	// store); signed out if it was refused or could not be checked.
	sess, err := s.session(r)
	if err != nil {
		sess = nil
	}
	p := s.pageFor(sess, "Error")
	p.Error, p.Reasons, p.RequestID = msg, reasons, id
	p.FreshLogin = status == http.StatusUnauthorized
	if err := s.render(w, status, "error.html", p); err != nil {
		s.log.ErrorContext(r.Context(), "render error page", "err", err)
	}
}

// signInFirst answers a dashboard request that needs a session and has
// none with the 401 error page, whose sign-in returns to returnTo (a path
// on this site).
func (s *Server) signInFirst(w http.ResponseWriter, r *http.Request, returnTo, msg string) error {
	p := s.pageFor(nil, "Sign in")
	p.Error, p.ReturnTo = msg, safeReturn(returnTo)
	p.RequestID, _ = r.Context().Value(requestIDKey{}).(string)
	return s.render(w, http.StatusUnauthorized, "error.html", p)
}

// The dashboard lists at most this many active and other credentials.
const (
	dashboardActive = 100
	dashboardOthers = 20
)

func (s *Server) uiIndex(w http.ResponseWriter, r *http.Request) error {
	p, sess, err := s.newPage(r, "Dashboard")
	if err != nil {
		return err
	}
	p.Flash = s.takeFlash(w, r, sess)
	if sess != nil {
		routes, dec, err := s.cfg.Broker.AllowedRoutes(r.Context(), sess.principal)
		switch {
		case errors.Is(err, policy.ErrNoPolicy):
			p.Error = noPolicyMessage
		case err != nil:
			p.Error = "policy evaluation failed; no routes listed"
		default:
			p.Routes, p.Revision = routesResponse(routes, dec).Routes, dec.Revision
		}
		// Bounded: the newest active credentials, then the most recent
		// others (expired, revoked), each with a note when more exist.
		// Each is one bounded read per store (broker.ListLive and
		// ListEnded split the credentials as their state shows).
		leases, more, err := s.leasePage(r.Context(), sess.principal, broker.ListPage{Limit: dashboardActive, Filter: broker.ListLive})
		if err != nil {
			return err
		}
		others, moreOthers, err := s.leasePage(r.Context(), sess.principal, broker.ListPage{Limit: dashboardOthers, Filter: broker.ListEnded})
		if err != nil {
			return err
		}
		p.Leases, p.MoreActive, p.MoreOthers = append(leases, others...), more, moreOthers
	}
	return s.render(w, http.StatusOK, "index.html", p)
}

func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Login == nil {
		return &HTTPError{Status: http.StatusNotFound, Code: broker.CodeNotFound, Msg: "interactive sign-in is not configured"}
	}
	return s.cfg.Login.Start(w, r, safeReturn(r.URL.Query().Get("return")))
}

// loginStateMissing is the identity/oidc refusal reason
// (ReasonLoginStateMissing) of a callback in a browser that has no sign-in
// in progress at this address: most often, the sign-in was started at
// another name for the host than the public URL's, whose cookie the
// browser keeps for that name; or its page was left open so long that the
// browser dropped the login cookie (an hour after the sign-in's time limit).
const loginStateMissing = "login_state_missing"

const loginStateMissingMessage = "sign-in not completed: this browser started no sign-in at this address, " +
	"or the sign-in page was left open so long that it expired. " +
	"Open the dashboard at its public URL (this address, which sqlgated prints at start), not under another name " +
	"for the same host (such as localhost for 127.0.0.1), and sign in again"

// loginStateInvalid is the identity/oidc refusal reason
// (ReasonLoginStateInvalid) of a callback whose sign-in cannot be completed
// as it stands: it took longer than its time limit ("the sign-in took
// longer than 10 minutes"), was completed already, or its login cookie does
// not open. Its detail is one of those fixed phrases (nothing of the
// request), which the page shows, since only signing in again helps.
const loginStateInvalid = "login_state_invalid"

func (s *Server) uiCallback(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Login == nil {
		return &HTTPError{Status: http.StatusNotFound, Code: broker.CodeNotFound, Msg: "interactive sign-in is not configured"}
	}
	p, returnTo, err := s.cfg.Login.Callback(w, r)
	var authErr *identity.AuthError
	switch {
	case errors.As(err, &authErr) && authErr.Reason == loginStateMissing:
		return &HTTPError{Status: http.StatusUnauthorized, Code: broker.CodeUnauthenticated, Msg: loginStateMissingMessage, Err: err}
	case errors.As(err, &authErr) && authErr.Reason == loginStateInvalid && authErr.Err != nil:
		return &HTTPError{
			Status: http.StatusUnauthorized, Code: broker.CodeUnauthenticated,
			Msg: "sign-in not completed: " + authErr.Err.Error() + "; sign in again", Err: err,
		}
	}
	if err != nil {
		return err
	}
	// The identity provider may sign in again without asking (its own
	// session): an offboarded sign-in gets no dashboard session.
	if err := s.checkSignIn(r.Context(), p); err != nil {
		return fmt.Errorf("dashboard sign-in: %w", err)
	}
	// A sign-in in a browser that has a session (another user's on a
	// shared machine, or the same user's) ends it: its cookie, wherever
	// else it went, is no longer a way in.
	if err := s.endSessions(r.Context(), s.sessions.cookies(r)); err != nil {
		return &HTTPError{
			Status: http.StatusServiceUnavailable, Code: broker.CodeUnavailable,
			Msg: "sign-in not completed: the earlier session of this browser could not be ended; try again", Err: err,
		}
	}
	expires := s.now().Add(s.cfg.SessionMaxAge)
	if !p.Expiry.IsZero() && p.Expiry.Before(expires) {
		expires = p.Expiry // the session never outlives the sign-in token
	}
	sess, err := s.sessions.create(r.Context(), p, expires)
	if err != nil {
		return fmt.Errorf("dashboard sign-in: %w", err)
	}
	s.setSessionCookie(w, sess)
	s.log.InfoContext(r.Context(), "dashboard sign-in", "subject", p.Subject, "issuer", p.Issuer)
	http.Redirect(w, r, safeReturn(returnTo), http.StatusSeeOther) //nolint:gosec // G710: safeReturn keeps the target a same-site path
	return nil
}

// uiLogout ends the session of the cookie, CSRF token checked. A sign-out
// that a browser says comes from another origin (Sec-Fetch-Site other than
// same-origin, or without it an Origin that is not this host, as
// [http.CrossOriginProtection] checks) is refused before any cookie is
// read or cleared: another site's form post carries no session cookie
// (SameSite=Lax), and clearing the cookie in the answer to it, which the
// browser applies on a top-level navigation, would sign the user out in the
// browser while the session lived on. A response clears only a session
// cookie that its request carried. It does not check the sign-in cutoff: a
// revoked sign-in, or a cutoff store that cannot be read, must not keep a
// session or its cookie. When the session store cannot be read (so neither
// the session nor its CSRF token is known), or the request carries more than
// one session cookie, each is ended by its hash all the same (holding a
// cookie is holding its session), without a CSRF check: such a post comes
// from this origin or from a client that holds the cookies, and it gains a
// sign-out only (a session ends, nothing is granted or read). Only when
// ending them fails too is the answer 503 with the cookie kept, so that the
// user signs out again rather than believing it done.
func (s *Server) uiLogout(w http.ResponseWriter, r *http.Request) error {
	if err := logoutOrigin.Check(r); err != nil {
		return &HTTPError{
			Status: http.StatusForbidden, Code: broker.CodeForbidden,
			Msg: "not signed out: the sign-out came from another site; use the dashboard's Sign out button", Err: err,
		}
	}
	ids := s.sessions.cookies(r)
	if len(ids) == 0 {
		// Nothing to end, and no cookie to clear.
		signedOut(r)
		return identity.Unauthenticated("no session", nil)
	}
	if len(ids) == 1 {
		sess, err := s.sessions.lookup(r.Context(), ids[0])
		switch {
		case err == nil && sess == nil: // an expired or unknown session's cookie, which the request carried
			s.clearSessionCookie(w)
			signedOut(r)
			return identity.Unauthenticated("no session", nil)
		case err == nil:
			if err := checkForm(r, sess); err != nil {
				return err
			}
		default:
			s.log.ErrorContext(r.Context(), "sign out: session store unreadable; ending the session by its cookie", "err", err)
		}
	}
	signedOut(r)
	if err := s.endSessions(r.Context(), ids); err != nil {
		return &HTTPError{
			Status: http.StatusServiceUnavailable, Code: broker.CodeUnavailable,
			Msg: "not signed out: the session store cannot be reached; sign out again", Err: err,
		}
	}
	s.clearSessionCookie(w)
	s.redirectWithFlash(w, r, nil, flashSignedOut, "")
	return nil
}

// logoutOrigin refuses a sign-out from another origin (see
// [Server.uiLogout]).
var logoutOrigin = http.NewCrossOriginProtection()

// endSessions ends the sessions of the cookies ids.
func (s *Server) endSessions(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if err := s.sessions.delete(ctx, id); err != nil {
			return fmt.Errorf("end the dashboard session: %w", err)
		}
	}
	return nil
}

func (s *Server) uiRevoke(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.formSession(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if lease, handled, err := s.revokeSQL(clientContext(r), sess.principal, s.cfg.SQLLeases, id); handled {
		if err != nil {
			return err
		}
		msg := flashSQLRevoked
		if !lease.State.Final() {
			msg = flashSQLRevoking
		}
		s.redirectWithFlash(w, r, sess, msg, lease.Username)
		return nil
	}
	if _, err := s.revokeNATS(r.Context(), sess.principal, id, "revoked in the dashboard by "+sess.principal.Display()); err != nil {
		return err
	}
	s.redirectWithFlash(w, r, sess, flashNATSRevoked, clip(id, 12))
	return nil
}

func (s *Server) uiAudit(w http.ResponseWriter, r *http.Request) error {
	p, sess, err := s.newPage(r, "Audit")
	if err != nil {
		return err
	}
	if err := s.auditPage(r, p, sess); err != nil {
		return err
	}
	return s.render(w, http.StatusOK, "audit.html", p)
}

func (s *Server) auditPage(r *http.Request, p *page, sess *session) error {
	if sess == nil {
		return identity.Unauthenticated("no session", nil)
	}
	if s.cfg.Audit == nil {
		return &HTTPError{Status: http.StatusNotFound, Code: broker.CodeNotFound, Msg: "the audit log is not served here"}
	}
	if err := s.requireGroups(sess.principal, s.cfg.AuditorGroups, "the audit page"); err != nil {
		return err
	}
	cp, err := s.cfg.Audit.Checkpoint(r.Context())
	if err != nil {
		return auditFailure(err)
	}
	p.Checkpoint = string(cp)
	recs, err := s.cfg.Audit.Recent(r.Context(), 50)
	if err != nil {
		return auditFailure(err)
	}
	p.Records = recs
	return nil
}

func (s *Server) uiAuditVerify(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.formSession(r)
	if err != nil {
		return err
	}
	p := s.pageFor(sess, "Audit")
	if err := s.auditPage(r, p, sess); err != nil {
		return err
	}
	rep, err := s.cfg.Audit.Verify(r.Context(), 0, 0)
	if err != nil {
		return auditFailure(err)
	}
	p.Verify = &rep
	return s.render(w, http.StatusOK, "audit.html", p)
}

// uiAuditEvidence is the evidence form's download: the archive of GET
// /api/v1/audit/evidence, for the same auditor groups, answered as a
// dashboard page when it cannot be had. A browser without a session (or
// whose session expired) gets the 401 error page with a sign-in that
// returns to the audit page; a period that is not one (a date that is not
// one, from not before to) brings back the audit page with the reason
// beside the form; any other error is the dashboard's error page.
func (s *Server) uiAuditEvidence(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	if sess == nil {
		if s.cfg.Login == nil {
			return identity.Unauthenticated("no session", nil)
		}
		// A page, not a redirect to /login: the form's submission would
		// follow it on to the identity provider, another origin, which
		// the pages' CSP (form-action 'self') makes the browser refuse,
		// leaving the auditor on the audit page with nothing happening.
		// The link is a navigation of its own, which form-action does not
		// govern.
		return s.signInFirst(w, r, "/audit",
			"you are not signed in, or your session has ended: sign in, then download the evidence again")
	}
	if s.cfg.Audit == nil {
		return &HTTPError{Status: http.StatusNotFound, Code: broker.CodeNotFound, Msg: "the audit log is not served here"}
	}
	// A refused period is refused before the archive is built, so before
	// its first byte.
	err = s.auditEvidence(w, r, sess.principal)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		return err
	}
	p := s.pageFor(sess, "Audit")
	if err := s.auditPage(r, p, sess); err != nil {
		return err
	}
	q := r.URL.Query()
	p.EvidenceFrom, p.EvidenceTo, p.EvidenceError = q.Get("from"), q.Get("to"), he.Msg
	return s.render(w, http.StatusBadRequest, "audit.html", p)
}

func (s *Server) uiPolicy(w http.ResponseWriter, r *http.Request) error {
	p, sess, err := s.newPage(r, "Policy")
	if err != nil {
		return err
	}
	if err := s.policyPage(p, sess); err != nil {
		return err
	}
	p.EvalEntry = string(policy.Call)
	p.EvalInput = exampleInput(sess.principal)
	return s.render(w, http.StatusOK, "policy.html", p)
}

func (s *Server) policyPage(p *page, sess *session) error {
	if sess == nil {
		return identity.Unauthenticated("no session", nil)
	}
	if s.cfg.Policy == nil {
		return &HTTPError{Status: http.StatusNotFound, Code: broker.CodeNotFound, Msg: "policy status is not served here"}
	}
	st := s.policyStatus(sess.principal)
	p.Policy = &st
	return nil
}

func (s *Server) uiPolicyEval(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.formSession(r)
	if err != nil {
		return err
	}
	p := s.pageFor(sess, "Policy")
	if err := s.policyPage(p, sess); err != nil {
		return err
	}
	if err := s.requireGroups(sess.principal, s.cfg.AdminGroups, "evaluating policies"); err != nil {
		return err
	}
	p.EvalEntry, p.EvalInput = r.PostFormValue("entry"), r.PostFormValue("input")
	ev, err := s.evalEntry(r, evalRequest{Entry: p.EvalEntry, Input: []byte(p.EvalInput), Explain: r.PostFormValue("explain") != ""})
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusBadRequest {
		// Not decided: the form comes back with what is wrong.
		p.EvalError = he.Msg
		return s.render(w, http.StatusBadRequest, "policy.html", p)
	}
	if err != nil {
		return err
	}
	p.EvalResult, p.Explanation, p.EvalError = &ev.Decision, ev.Explanation, ev.Error
	return s.render(w, http.StatusOK, "policy.html", p)
}

// exampleInput is a starting point for the evaluation form: a JSON
// document built as a value, so that any group name or issuer (a
// backslash, a quote) stays valid JSON.
func exampleInput(p identity.Principal) string {
	groups := p.Groups
	if groups == nil {
		groups = []string{}
	}
	type obj = map[string]any
	doc := struct {
		Principal obj `json:"principal"`
		Route     obj `json:"route"`
		Params    obj `json:"params"`
		Request   obj `json:"request"`
	}{
		Principal: obj{"issuer": p.Issuer, "subject": "someone", "groups": groups, "roles": []string{}, "mfa": false, "service": false, "auth_time": 0},
		Route:     obj{"subject": "orders.v1.create", "kind": "statement", "target": "create_order", "database": "orders", "mode": "sync", "tags": []string{}},
		Params:    obj{"customer": "ACME", "amount": 250},
		Request:   obj{"correlation_id": "example", "time": "2026-11-27T10:00:00Z", "time_ns": int64(1795773600000000000), "transport": "nats", "client": obj{}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil { // not reached: every value above marshals
		return "{}"
	}
	return string(b)
}

// who is how the audit page shows an actor: the email when there is one,
// with the start of the subject, since emails need not be unique across
// issuers or verified; otherwise the subject and the issuer's host. Title
// holds the full issuer and subject.
type who struct{ Text, Title string }

func actorWho(a *audit.Actor) who {
	if a == nil {
		return who{}
	}
	title := strings.TrimSpace(a.Issuer + " " + a.Subject)
	host := a.Issuer
	if u, err := url.Parse(a.Issuer); err == nil && u.Host != "" {
		host = u.Host
	}
	if a.Email == "" {
		if host == "" {
			return who{Text: a.Subject, Title: title}
		}
		return who{Text: a.Subject + " @ " + host, Title: title}
	}
	sub := a.Subject
	if len([]rune(sub)) > 12 {
		sub = string([]rune(sub)[:12]) + "…"
	}
	text := a.Email + " (" + sub
	if host != "" {
		text += ", " + host
	}
	return who{Text: text + ")", Title: title}
}

// safeReturn keeps post-login redirects on this site.
func safeReturn(s string) string {
	if s == "" || len(s) > maxReturn || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") {
		return "/"
	}
	return s
}

// maxReturn bounds the page a sign-in returns to: it travels in the
// sign-in's cookie, which the browser sends with every request until the
// sign-in ends, so a long one from a crafted link would make each request
// too large for a proxy in front.
const maxReturn = 1024

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
