package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// Broker is the slice of the broker the web layer calls.
type Broker interface {
	AllowedRoutes(ctx context.Context, p identity.Principal) ([]*route.Route, policy.Decision, error)
	IssueNATS(ctx context.Context, req broker.NATSRequest) (*broker.NATSCredential, error)
	RevokeNATS(ctx context.Context, actor identity.Principal, userKeys []string, reason string) error
	// RevokeAll offboards a principal from what the broker holds (sign-in
	// cutoff, NATS credentials); [SQLLeases.RevokeAll] adds SQL leases.
	RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error)
}

// Authenticator verifies bearer tokens (identity/oidc).
type Authenticator interface {
	Verify(ctx context.Context, rawToken string) (identity.Principal, error)
}

// SignInChecker refuses the sign-ins that an offboarding (revoke-all)
// revoked: broker.Service.CheckSignIn.
type SignInChecker interface {
	// CheckSignIn returns nil when p's sign-in may act; an error matching
	// identity.ErrUnauthenticated (a *broker.SignInRevokedError, whose text
	// tells the user to sign in again) when it was revoked; an error
	// matching broker.ErrUnavailable when that cannot be known.
	CheckSignIn(ctx context.Context, p identity.Principal) error
}

// Issuances lists NATS credentials for the leases page and API.
type Issuances interface {
	// ByPrincipalPage lists one page of a principal's NATS credentials
	// (by Principal.ID()), newest first, reading at most page.Limit rows.
	ByPrincipalPage(ctx context.Context, principalID string, page broker.ListPage) ([]broker.Issuance, error)
	Get(ctx context.Context, userKey string) (broker.Issuance, error)
}

// Login runs the interactive OIDC login of the dashboard (identity/oidc).
type Login interface {
	// Start redirects the browser to the identity provider.
	Start(w http.ResponseWriter, r *http.Request, returnTo string) error
	// Callback completes the login: state, PKCE and nonce checked.
	Callback(w http.ResponseWriter, r *http.Request) (p identity.Principal, returnTo string, err error)
}

// Config wires a [Server]. Broker and Auth are required.
type Config struct {
	Broker Broker
	Auth   Authenticator
	// Issuers are the issuer URLs of the identity providers Auth trusts
	// (identity.issuers[].issuer; an Entra multi-tenant issuer keeps its
	// {tenantid}, which stands for any one tenant). Revoke-all refuses a
	// principal of another issuer (a trailing slash, a wrong host) as
	// invalid_request, before it records anything. Empty: the issuer is
	// not checked; a principal that nothing sqlgate keeps names is still
	// flagged (unknown_principal).
	Issuers   []string
	Issuances Issuances
	// SignIns is asked about every authenticated request (bearer token or
	// dashboard session) and every dashboard sign-in, so that an offboarded
	// principal's unexpired token or session stops working. nil: the
	// Broker's CheckSignIn when it has one, else nothing is checked. The
	// endpoints that issue or renew credentials (`POST nats/creds`,
	// `POST sql/creds`, `POST leases/{id}/renew`) leave this check to
	// Broker.IssueNATS, SQLLeases.IssueSQL and SQLLeases.RenewLease, which
	// check the same cutoffs first and audit each refusal (a decision
	// record); they must refuse a revoked sign-in with a
	// *broker.SignInRevokedError, as broker.Service and broker.Leases do.
	SignIns SignInChecker
	// SQLLeases serves short-lived SQL credentials; nil disables them.
	SQLLeases SQLLeases
	// Login enables the dashboard's sign-in; nil serves the API only.
	Login Login
	// Audit serves the audit endpoints; nil disables them.
	Audit AuditService
	// Policy serves policy evaluation and status; nil disables them.
	Policy PolicyService
	// Ready reports what keeps the instance from serving, for /readyz
	// (empty: ready; nil func: always ready). /readyz shows only the
	// components; the errors are logged.
	Ready func(ctx context.Context) []NotReady
	// Registry receives the HTTP metrics and is served at /metrics, which
	// needs no authentication and names every route pattern called, with
	// counts by status: unless MetricsElsewhere, served on this handler's
	// port (the API's).
	Registry *prometheus.Registry
	// MetricsElsewhere keeps /metrics off this handler: it is served on a
	// listener of its own ([MetricsHandler]), reachable only by the
	// scrapers.
	MetricsElsewhere bool
	// NATSURL is advertised to clients with their credentials.
	NATSURL string
	// Discovery is served unauthenticated at GET /api/v1/config so that the
	// CLI can sign in knowing only the broker URL.
	Discovery api.Discovery
	// AdminGroups may evaluate policies and revoke anyone's credentials;
	// AuditorGroups may read and verify the audit log.
	AdminGroups   []string
	AuditorGroups []string
	// Secure says browsers reach the server over TLS (its own, or a proxy's
	// in front of it): cookies are marked Secure and responses carry HSTS.
	Secure bool
	// SessionMaxAge caps a dashboard session (default 8h); sessions also end
	// when the sign-in token expires.
	SessionMaxAge time.Duration
	// Sessions keeps dashboard sessions (nil: in this process only).
	Sessions SessionStore
	// Mounts adds handlers under extra path prefixes (the dev identity
	// provider at /idp/).
	Mounts map[string]http.Handler
	Logger *slog.Logger
	Now    func() time.Time
}

// Server is sqlgate's HTTP handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	sessions *sessionStore
	metrics  *httpMetrics
	ready    readiness
}

// New validates cfg and builds the handler.
func New(cfg Config) (*Server, error) {
	if cfg.Broker == nil || cfg.Auth == nil {
		return nil, errors.New("web: Broker and Auth are required")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, mux: http.NewServeMux()}
	if s.cfg.SignIns == nil {
		s.cfg.SignIns, _ = cfg.Broker.(SignInChecker)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.SessionMaxAge <= 0 {
		s.cfg.SessionMaxAge = 8 * time.Hour
	}
	s.sessions = newSessionStore(s.now, cfg.Sessions, s.log, s.cookieName(sessionCookie))
	if cfg.Registry != nil {
		s.metrics = newHTTPMetrics(cfg.Registry)
		if !cfg.MetricsElsewhere {
			s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
		}
	}
	s.routes()
	for prefix, h := range cfg.Mounts {
		s.mux.Handle(prefix, h)
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	id := requestID()
	ctx := context.WithValue(r.Context(), requestIDKey{}, id)
	w.Header().Set("X-Request-Id", id)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	if s.cfg.Secure {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		v := recover()
		if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
			// A response that failed after it started: the connection is
			// cut so that the client sees a broken transfer.
			if s.metrics != nil {
				_, pattern := s.mux.Handler(r)
				s.metrics.observe(pattern, r.Method, http.StatusInternalServerError, s.now().Sub(start))
			}
			panic(v)
		}
		if v != nil {
			s.log.ErrorContext(ctx, "panic in handler", "request_id", id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeJSONError(rec, http.StatusInternalServerError, "internal", "internal error", nil, id)
		}
		if s.metrics != nil {
			_, pattern := s.mux.Handler(r)
			s.metrics.observe(pattern, r.Method, rec.status, s.now().Sub(start))
		}
	}()
	s.mux.ServeHTTP(rec, r.WithContext(ctx))
}

// handlerFunc is a handler that may fail; [Server.handle] maps the error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts a handlerFunc: errors become JSON error responses under
// /api/ and HTML error pages elsewhere, and are logged once with the request
// id.
func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), sessionLookupKey{}, &sessionLookup{}))
		sw := &startWriter{ResponseWriter: w}
		err := h(sw, r)
		if err == nil {
			return
		}
		status, body := publicError(err)
		id, _ := r.Context().Value(requestIDKey{}).(string)
		if sw.started {
			// The status and part of the body are sent: an error appended
			// to them would be taken for part of a good response (an
			// export bundle). The transfer is broken off instead.
			s.log.ErrorContext(r.Context(), "response failed after it started; connection aborted", "request_id", id, "method", r.Method, "path", r.URL.Path, "err", err)
			panic(http.ErrAbortHandler)
		}
		level := slog.LevelWarn
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.Log(r.Context(), level, "request failed", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeJSONError(w, status, body.Code, body.Message, body.Reasons, id)
			return
		}
		s.renderError(w, r, status, body.Message, body.Reasons, id)
	})
}

// principal authenticates the request: a bearer token (API clients) or the
// dashboard session cookie. Either way a sign-in that an offboarding
// revoked is refused.
func (s *Server) principal(r *http.Request) (identity.Principal, *session, error) {
	return s.authenticate(r, true)
}

// authenticate is [Server.principal]; with checkCutoff false it leaves the
// sign-in cutoff to the handler (see [Server.credAuthed]).
func (s *Server) authenticate(r *http.Request, checkCutoff bool) (identity.Principal, *session, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return identity.Principal{}, nil, identity.Unauthenticated("malformed Authorization header", nil)
		}
		p, err := s.cfg.Auth.Verify(r.Context(), strings.TrimSpace(token))
		if err != nil {
			return identity.Principal{}, nil, err
		}
		if checkCutoff {
			if err := s.checkSignIn(r.Context(), p); err != nil {
				return identity.Principal{}, nil, err
			}
		}
		return p, nil, nil
	}
	var sess *session
	if checkCutoff {
		var err error
		if sess, err = s.session(r); err != nil {
			return identity.Principal{}, nil, err
		}
	} else {
		sess = s.sessions.fromRequest(r)
	}
	if sess != nil {
		return sess.principal, sess, nil
	}
	return identity.Principal{}, nil, identity.Unauthenticated("no bearer token or session", nil)
}

// checkSignIn refuses p when an offboarding revoked its sign-in
// ([Config.SignIns]); it fails closed when that cannot be known.
func (s *Server) checkSignIn(ctx context.Context, p identity.Principal) error {
	if s.cfg.SignIns == nil {
		return nil
	}
	if err := s.cfg.SignIns.CheckSignIn(ctx, p); err != nil {
		return fmt.Errorf("sign-in check of %s: %w", p.Display(), err)
	}
	return nil
}

// session returns the request's dashboard session, nil when it has none.
// A session whose sign-in an offboarding revoked is ended and refused,
// also one that a revoke-all did not end because it was being created at
// that moment. Within a request handled by [Server.handle] the answer is
// looked up once and then remembered.
func (s *Server) session(r *http.Request) (*session, error) {
	memo, _ := r.Context().Value(sessionLookupKey{}).(*sessionLookup)
	if memo != nil && memo.done {
		return memo.sess, memo.err
	}
	sess, err := s.lookupSession(r)
	if memo != nil {
		*memo = sessionLookup{done: true, sess: sess, err: err}
	}
	return sess, err
}

func (s *Server) lookupSession(r *http.Request) (*session, error) {
	sess := s.sessions.fromRequest(r)
	if sess == nil {
		return nil, nil
	}
	if err := s.checkSignIn(r.Context(), sess.principal); err != nil {
		if errors.Is(err, identity.ErrUnauthenticated) {
			if derr := s.sessions.delete(r.Context(), sess.id); derr != nil {
				s.log.ErrorContext(r.Context(), "end a revoked dashboard session", "err", derr)
			}
		}
		return nil, err
	}
	return sess, nil
}

// sessionLookup is a request's [Server.session] answer, so that the error
// page does not ask the session and cutoff stores again.
type sessionLookup struct {
	done bool
	sess *session
	err  error
}

type sessionLookupKey struct{}

// signedOut makes the rest of the request (its error page) signed out: the
// response ends the session.
func signedOut(r *http.Request) {
	if memo, _ := r.Context().Value(sessionLookupKey{}).(*sessionLookup); memo != nil {
		*memo = sessionLookup{done: true}
	}
}

// authed wraps a handler that needs a principal. For session-authenticated
// requests that change state, the CSRF token must match.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, p identity.Principal) error) http.Handler {
	return s.authedBy(true, h)
}

// credAuthed is [Server.authed] for the endpoints that issue or renew
// credentials: the broker checks the sign-in cutoff there itself, before
// any work, and audits a refusal (a decision record that the offboarding
// was held to), which a refusal here would leave unrecorded. It fails
// closed like the check here (an unreadable cutoff store refuses); a
// dashboard session it refuses as revoked is ended.
func (s *Server) credAuthed(h func(w http.ResponseWriter, r *http.Request, p identity.Principal) error) http.Handler {
	return s.authedBy(false, h)
}

func (s *Server) authedBy(checkCutoff bool, h func(w http.ResponseWriter, r *http.Request, p identity.Principal) error) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		p, sess, err := s.authenticate(r, checkCutoff)
		if err != nil {
			return err
		}
		if sess != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sess.checkCSRF(r) {
				return &HTTPError{Status: http.StatusForbidden, Code: broker.CodeForbidden, Msg: "missing or wrong CSRF token"}
			}
		}
		err = h(w, r, p)
		var revoked *broker.SignInRevokedError
		if sess != nil && errors.As(err, &revoked) {
			if derr := s.sessions.delete(r.Context(), sess.id); derr != nil {
				s.log.ErrorContext(r.Context(), "end a revoked dashboard session", "err", derr)
			}
		}
		return err
	})
}

func (s *Server) inGroups(p identity.Principal, groups []string) bool {
	return slices.ContainsFunc(groups, p.InGroup)
}

func (s *Server) requireGroups(p identity.Principal, groups []string, what string) error {
	if s.inGroups(p, groups) {
		return nil
	}
	return &HTTPError{Status: http.StatusForbidden, Code: broker.CodeForbidden, Msg: what + " requires membership in one of: " + strings.Join(groups, ", ")}
}

// decodeJSON reads a JSON request body strictly: at most limit bytes,
// exactly one value, unknown fields rejected, and, unlike encoding/json
// alone, no name twice in an object (which would let the last one win
// unseen: `{"principal":"a","principal":"b"}`) and no name that matches a
// field only when case is ignored (`{"PRINCIPAL":…}`).
func decodeJSON(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &HTTPError{Status: http.StatusRequestEntityTooLarge, Code: broker.CodeTooLarge, Msg: fmt.Sprintf("request body exceeds %d bytes", limit)}
		}
		return badRequest("request body could not be read")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body is not valid JSON for this endpoint: " + jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("trailing data after the JSON body")
	}
	if err := checkNames(json.NewDecoder(bytes.NewReader(body)), reflect.TypeOf(v)); err != nil {
		return badRequest("request body is not valid JSON for this endpoint: " + err.Error())
	}
	return nil
}

// checkNames reads one JSON value from dec (already known to be valid) and
// refuses an object that names a member twice, or a member of a struct
// (of type t, nil when not known) by a name that differs from its field's
// only in case.
func checkNames(dec *json.Decoder, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return errors.New("malformed JSON")
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type // nil: not a struct decoded by field
		if t != nil && t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType) {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			name, ok := tok.(string)
			if err != nil || !ok {
				return errors.New("malformed JSON")
			}
			ft, known := fields[name]
			if seen[name] {
				if known {
					return fmt.Errorf("field %q appears twice", name)
				}
				return errors.New("a name appears twice in one object")
			}
			seen[name] = true
			var next reflect.Type
			switch {
			case fields != nil:
				if !known {
					for fname := range fields {
						if strings.EqualFold(fname, name) {
							return fmt.Errorf("field %q must be spelled exactly so (names are case-sensitive)", fname)
						}
					}
				}
				next = ft
			case t != nil && t.Kind() == reflect.Map:
				next = t.Elem()
			}
			if err := checkNames(dec, next); err != nil {
				return err
			}
		}
	case json.Delim('['):
		var next reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			next = t.Elem()
		}
		for dec.More() {
			if err := checkNames(dec, next); err != nil {
				return err
			}
		}
	default:
		return nil // a scalar
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errors.New("malformed JSON")
	}
	return nil
}

// jsonFields maps the JSON names of t's fields, as encoding/json decodes
// them (embedded structs' fields promoted), to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && indirect(f.Type).Kind() == reflect.Struct {
			continue // its fields are promoted (VisibleFields lists them)
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := out[name]; !dup {
			out[name] = f.Type
		}
	}
	return out
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// jsonErrorText describes a decoding error without echoing input values.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.EOF):
		return "empty body"
	default:
		return "malformed JSON"
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	noStore(w)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string, reasons []string, id string) {
	writeJSON(w, status, api.ErrorResponse{Error: api.Error{Code: code, Message: msg, Reasons: reasons, RequestID: id}})
}

type requestIDKey struct{}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// startWriter notes whether a response has started (status or body sent).
type startWriter struct {
	http.ResponseWriter
	started bool
}

func (s *startWriter) WriteHeader(code int) {
	s.started = true
	s.ResponseWriter.WriteHeader(code)
}

func (s *startWriter) Write(b []byte) (int, error) {
	s.started = true
	return s.ResponseWriter.Write(b)
}

func (s *startWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// download sets a download's headers when its first byte is written, so
// that an error before it is answered as an ordinary error, without them.
type download struct {
	w       http.ResponseWriter
	headers map[string]string
	started bool
}

func (d *download) Write(b []byte) (int, error) {
	d.start()
	return d.w.Write(b)
}

// start sends the headers (also for a download that turned out empty).
func (d *download) start() {
	if d.started {
		return
	}
	d.started = true
	noStore(d.w)
	for k, v := range d.headers {
		d.w.Header().Set(k, v)
	}
}

// noStore keeps a response out of caches (the browser's, a proxy's): the
// audit log, receipts, recorded inputs and credentials are for whoever
// asked, not for the next user of the machine.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}
