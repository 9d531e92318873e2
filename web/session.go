package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

const (
	// sessionCookie is the session cookie's name; behind TLS it is
	// [hostPrefix]+sessionCookie ([Server.cookieName]).
	sessionCookie = "sqlgate_session"
	csrfField     = "csrf_token"
	csrfHeader    = "X-CSRF-Token"
	// hostPrefix makes browsers keep a cookie to this host: only a Secure,
	// Path=/ cookie without Domain set by this host may carry it, so a
	// sibling subdomain can neither plant nor shadow it.
	hostPrefix = "__Host-"
	// maxSessionCookies bounds how many session cookies of one request a
	// sign-out or sign-in ends; a browser sends one.
	maxSessionCookies = 8
)

// cookieName is the name of the cookie base: with the __Host- prefix
// behind TLS (browsers accept it only on Secure cookies), the bare name on
// plain HTTP (sqlgated dev on loopback).
func (srv *Server) cookieName(base string) string {
	if srv.cfg.Secure {
		return hostPrefix + base
	}
	return base
}

// session is a signed-in dashboard user. Sessions live on the server; the
// cookie carries only a random id.
type session struct {
	id        string
	principal identity.Principal
	csrf      string
	expires   time.Time
}

// checkCSRF compares the request's CSRF token with the session's in constant
// time. The token comes from the header, or from the field of a form that
// [Server.formSession] has already read within its bound: it never reads the
// body itself, so an API request without the header is refused before its
// body is read.
func (s *session) checkCSRF(r *http.Request) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostForm.Get(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// Session is a dashboard session as a [SessionStore] keeps it: under the
// SHA-256 of its cookie, so that whoever reads the store cannot sign in with
// what is there.
type Session struct {
	// Key is the hex SHA-256 of the session cookie.
	Key       string
	Principal identity.Principal
	CSRF      string
	Expires   time.Time
}

// SessionStore keeps dashboard sessions. The default keeps them in the
// process, which serves one instance; instances behind one address (the Helm
// chart's replicas) share one in the control database, so that a session
// started on one is known to all and a sign-out ends it everywhere.
type SessionStore interface {
	// PutSession stores s; it may drop sessions that expired before now.
	PutSession(ctx context.Context, s Session, now time.Time) error
	// Session returns the session under key; found is false if there is none.
	Session(ctx context.Context, key string) (s Session, found bool, err error)
	// DeleteSession removes the session under key, if there is one.
	DeleteSession(ctx context.Context, key string) error
	// DeletePrincipalSessions ends every session of a principal
	// (identity.Principal.ID; offboarding) and returns how many there were.
	DeletePrincipalSessions(ctx context.Context, principalID string) (int64, error)
}

// sessionStore puts expiry and the cookie's hashing in front of a
// SessionStore.
type sessionStore struct {
	now     func() time.Time
	backend SessionStore
	log     *slog.Logger
	cookie  string // the session cookie's name
}

func newSessionStore(now func() time.Time, backend SessionStore, log *slog.Logger, cookie string) *sessionStore {
	if backend == nil {
		backend = newMemSessions()
	}
	return &sessionStore{now: now, backend: backend, log: log, cookie: cookie}
}

func sessionKey(cookie string) string {
	h := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(h[:])
}

// create starts a session that ends at expires.
func (st *sessionStore) create(ctx context.Context, p identity.Principal, expires time.Time) (*session, error) {
	s := &session{id: randomToken(), principal: p, csrf: randomToken(), expires: expires}
	err := st.backend.PutSession(ctx, Session{Key: sessionKey(s.id), Principal: p, CSRF: s.csrf, Expires: expires}, st.now())
	if err != nil {
		return nil, fmt.Errorf("store the session: %w", err)
	}
	return s, nil
}

// cookies returns the values of the request's session cookies (empty
// ones left out), at most maxSessionCookies. A browser sends one; more are
// cookies planted beside it (another path, a parent domain's), and no one
// of them is trusted.
func (st *sessionStore) cookies(r *http.Request) []string {
	var out []string
	for _, c := range r.CookiesNamed(st.cookie) {
		if c.Value != "" && len(out) < maxSessionCookies {
			out = append(out, c.Value)
		}
	}
	return out
}

// fromRequest returns the request's session, or nil: no cookie, more than
// one (treated as signed out: the first may be one a sibling domain
// planted), no such session, an expired one, or a store that cannot be
// read (logged; the request is then not signed in).
func (st *sessionStore) fromRequest(r *http.Request) *session {
	ids := st.cookies(r)
	if len(ids) > 1 {
		st.log.WarnContext(r.Context(), "request with more than one dashboard session cookie; treated as signed out", "cookies", len(ids))
	}
	if len(ids) != 1 {
		return nil
	}
	s, err := st.lookup(r.Context(), ids[0])
	if err != nil {
		st.log.ErrorContext(r.Context(), "dashboard session store unreadable; the request is not signed in", "err", err)
		return nil
	}
	return s
}

// lookup returns the session of cookie id: nil when there is none or it
// expired, an error when the store cannot be read.
func (st *sessionStore) lookup(ctx context.Context, id string) (*session, error) {
	key := sessionKey(id)
	stored, found, err := st.backend.Session(ctx, key)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	if !st.now().Before(stored.Expires) {
		_ = st.backend.DeleteSession(ctx, key) // best effort: PutSession drops it too
		return nil, nil
	}
	return &session{id: id, principal: stored.Principal, csrf: stored.CSRF, expires: stored.Expires}, nil
}

func (st *sessionStore) delete(ctx context.Context, id string) error {
	return st.backend.DeleteSession(ctx, sessionKey(id))
}

// memSessions is the in-process SessionStore.
type memSessions struct {
	mu sync.Mutex
	m  map[string]Session
}

func newMemSessions() *memSessions { return &memSessions{m: map[string]Session{}} }

func (m *memSessions) PutSession(_ context.Context, s Session, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, old := range m.m { // sweep expired sessions on the way
		if !now.Before(old.Expires) {
			delete(m.m, k)
		}
	}
	m.m[s.Key] = s
	return nil
}

func (m *memSessions) Session(_ context.Context, key string) (Session, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[key]
	return s, ok, nil
}

func (m *memSessions) DeletePrincipalSessions(_ context.Context, principalID string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, s := range m.m {
		if s.Principal.ID() == principalID {
			delete(m.m, k)
			n++
		}
	}
	return n, nil
}

func (m *memSessions) DeleteSession(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.m, key)
	m.mu.Unlock()
	return nil
}

func (srv *Server) setSessionCookie(w http.ResponseWriter, s *session) {
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set whenever browsers reach sqlgated over TLS; dev mode is plain HTTP on loopback
		Name: srv.sessions.cookie, Value: s.id, Path: "/", Expires: s.expires,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteLaxMode,
	})
}

func (srv *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set whenever browsers reach sqlgated over TLS; dev mode is plain HTTP on loopback
		Name: srv.sessions.cookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteLaxMode,
	})
}

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // programmer/platform error: no safe fallback
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// flashCookie carries the one-line message of the page after a form post.
// It is a cookie, not a query parameter, so that no link from elsewhere can
// put words on the dashboard; and it names one of [flashTexts], with its
// one value signed with the session's secret, so that no cookie planted by
// another site can either.
const flashCookie = "sqlgate_flash"

// The dashboard's flash messages, by the id the cookie carries. %s is the
// message's value (a login name, the start of a key).
const (
	flashSignedOut   = "signed-out"
	flashSQLRevoked  = "sql-revoked"
	flashSQLRevoking = "sql-revoking"
	flashNATSRevoked = "nats-revoked"
)

var flashTexts = map[string]string{
	flashSignedOut:   "Signed out.",
	flashSQLRevoked:  "SQL login %s revoked.",
	flashSQLRevoking: "SQL login %s is being revoked: the revocation has not finished yet (sqlgated retries; sqlgate leases revoke shows why).",
	flashNATSRevoked: "Credential %s… revoked.",
}

// maxFlashValue bounds a flash message's value.
const maxFlashValue = 128

// flashMAC signs a flash message's id and value with the session's secret
// (its cookie, which only this server and the browser hold).
func flashMAC(sess *session, id, value string) []byte {
	m := hmac.New(sha256.New, []byte(sess.id))
	m.Write([]byte("sqlgate flash\x00" + id + "\x00" + value))
	return m.Sum(nil)
}

// redirectWithFlash answers a form post with a redirect to the dashboard,
// which shows the message id once: with value (signed for sess) when its
// text has one.
func (srv *Server) redirectWithFlash(w http.ResponseWriter, r *http.Request, sess *session, id, value string) {
	v := id
	if sess != nil && value != "" {
		value = clip(value, maxFlashValue)
		v += "." + base64.RawURLEncoding.EncodeToString([]byte(value)) + "." + base64.RawURLEncoding.EncodeToString(flashMAC(sess, id, value))
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set whenever browsers reach sqlgated over TLS; dev mode is plain HTTP on loopback
		Name: srv.cookieName(flashCookie), Value: v, Path: "/", MaxAge: 60,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// takeFlash returns the flash message for sess (nil: signed out), if any,
// and clears it. A message that is not one of flashTexts, or whose value
// is not signed for sess, is not shown.
func (srv *Server) takeFlash(w http.ResponseWriter, r *http.Request, sess *session) string {
	name := srv.cookieName(flashCookie)
	cs := r.CookiesNamed(name)
	if len(cs) == 0 {
		return ""
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: as in redirectWithFlash
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	if len(cs) != 1 {
		return ""
	}
	parts := strings.Split(cs[0].Value, ".")
	text, ok := flashTexts[parts[0]]
	if !ok {
		return ""
	}
	hasValue := strings.Contains(text, "%s")
	switch {
	case len(parts) == 1 && !hasValue:
		return text
	case len(parts) != 3 || !hasValue || sess == nil:
		return ""
	}
	value, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || len(value) > maxFlashValue {
		return ""
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(mac, flashMAC(sess, parts[0], string(value))) {
		return ""
	}
	return fmt.Sprintf(text, value)
}
