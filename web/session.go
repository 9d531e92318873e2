package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

const (
	sessionCookie = "sqlgate_session"
	csrfField     = "csrf_token"
	csrfHeader    = "X-CSRF-Token"
)

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
}

func newSessionStore(now func() time.Time, backend SessionStore, log *slog.Logger) *sessionStore {
	if backend == nil {
		backend = newMemSessions()
	}
	return &sessionStore{now: now, backend: backend, log: log}
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

// fromRequest returns the request's session, or nil: no cookie, no such
// session, an expired one, or a store that cannot be read (logged; the
// request is then not signed in).
func (st *sessionStore) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sessionKey(c.Value)
	stored, found, err := st.backend.Session(r.Context(), key)
	if err != nil {
		st.log.ErrorContext(r.Context(), "dashboard session store unreadable; the request is not signed in", "err", err)
		return nil
	}
	if !found {
		return nil
	}
	if !st.now().Before(stored.Expires) {
		_ = st.backend.DeleteSession(r.Context(), key) // best effort: PutSession drops it too
		return nil
	}
	return &session{id: c.Value, principal: stored.Principal, csrf: stored.CSRF, expires: stored.Expires}
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
		Name: sessionCookie, Value: s.id, Path: "/", Expires: s.expires,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteLaxMode,
	})
}

func (srv *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set whenever browsers reach sqlgated over TLS; dev mode is plain HTTP on loopback
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
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
// put words on the dashboard.
const flashCookie = "sqlgate_flash"

// redirectWithFlash answers a form post with a redirect to the dashboard,
// which shows msg once.
func (srv *Server) redirectWithFlash(w http.ResponseWriter, r *http.Request, msg string) {
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set whenever browsers reach sqlgated over TLS; dev mode is plain HTTP on loopback
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(msg)), Path: "/", MaxAge: 60,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// takeFlash returns the flash message, if any, and clears it.
func (srv *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: as in redirectWithFlash
		Name: flashCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: srv.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	msg, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(msg) > 512 {
		return ""
	}
	return string(msg)
}
