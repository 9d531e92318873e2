package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
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

type sessionStore struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessionStore(now func() time.Time) *sessionStore {
	return &sessionStore{now: now, m: map[string]*session{}}
}

// create starts a session that ends at expires.
func (st *sessionStore) create(p identity.Principal, expires time.Time) *session {
	s := &session{id: randomToken(), principal: p, csrf: randomToken(), expires: expires}
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	for id, old := range st.m { // sweep expired sessions on the way
		if !now.Before(old.expires) {
			delete(st.m, id)
		}
	}
	st.m[s.id] = s
	return s
}

func (st *sessionStore) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[c.Value]
	if !ok {
		return nil
	}
	if !st.now().Before(s.expires) {
		delete(st.m, c.Value)
		return nil
	}
	return s
}

func (st *sessionStore) delete(id string) {
	st.mu.Lock()
	delete(st.m, id)
	st.mu.Unlock()
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
func (s *Server) redirectWithFlash(w http.ResponseWriter, r *http.Request, msg string) {
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set whenever browsers reach sqlgated over TLS; dev mode is plain HTTP on loopback
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(msg)), Path: "/", MaxAge: 60,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// takeFlash returns the flash message, if any, and clears it.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: as in redirectWithFlash
		Name: flashCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	msg, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(msg) > 512 {
		return ""
	}
	return string(msg)
}
