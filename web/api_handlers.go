package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// maxBody bounds JSON request bodies.
const maxBody = 64 << 10

// maxTTLSeconds bounds a requested credential lifetime (366 days).
const maxTTLSeconds = int64(366 * 24 * time.Hour / time.Second)

// maxDocBody bounds bodies that carry a policy input document: the policy
// evaluation API and the dashboard's forms (its policy form holds one).
const maxDocBody = 1 << 20

func (s *Server) routes() {
	m := s.mux
	// Any other path answers in its part's error format too: JSON under
	// /api/, the dashboard's error page elsewhere.
	m.Handle("/api/", http.HandlerFunc(s.noEndpoint))
	m.Handle("/", http.HandlerFunc(s.noEndpoint))
	m.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	m.Handle("GET /readyz", http.HandlerFunc(s.readyz))

	m.Handle("GET "+api.Prefix+"/config", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.cfg.Discovery)
	}))
	m.Handle("GET "+api.Prefix+"/whoami", s.authed(s.whoami))
	m.Handle("GET "+api.Prefix+"/routes", s.authed(s.listRoutes))
	m.Handle("POST "+api.Prefix+"/nats/creds", s.credAuthed(s.natsCreds))
	m.Handle("GET "+api.Prefix+"/leases", s.authed(s.listLeases))
	m.Handle("DELETE "+api.Prefix+"/leases/{id}", s.authed(s.revokeLease))
	s.sqlRoutes(s.cfg.SQLLeases)
	s.auditRoutes()
	s.policyRoutes()
	s.uiRoutes()
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, p identity.Principal) error {
	writeJSON(w, http.StatusOK, whoAmI(p))
	return nil
}

func whoAmI(p identity.Principal) api.WhoAmI {
	out := api.WhoAmI{
		Issuer: p.Issuer, Subject: p.Subject, ObjectID: p.ObjectID, Email: p.Email, Name: p.Name,
		Groups: p.Groups, Roles: p.Roles, Tenant: p.Tenant, MFA: p.MFA, Expiry: p.Expiry,
	}
	if out.Groups == nil {
		out.Groups = []string{}
	}
	if out.Roles == nil {
		out.Roles = []string{}
	}
	return out
}

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	routes, dec, err := s.cfg.Broker.AllowedRoutes(r.Context(), p)
	if err != nil {
		return errors.Join(broker.ErrUnavailable, err)
	}
	writeJSON(w, http.StatusOK, routesResponse(routes, dec))
	return nil
}

func routesResponse(routes []*route.Route, dec policy.Decision) api.Routes {
	out := api.Routes{Routes: []api.Route{}, PolicyRevision: dec.Revision}
	for _, r := range routes {
		out.Routes = append(out.Routes, api.Route{
			Subject: r.Subject, Description: r.Description, Kind: string(r.Kind), Target: r.Target,
			Database: r.Database, Mode: string(r.Mode), TimeoutMS: r.Timeout.Milliseconds(),
			MaxPayload: r.MaxPayload, Emit: r.Emit, Tags: r.Tags, Params: r.SchemaJSON,
		})
	}
	return out
}

func (s *Server) natsCreds(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	var req api.NATSCredsRequest
	if err := decodeJSON(r, maxBody, &req); err != nil {
		return err
	}
	// A year bounds every requested lifetime (as for SQL credentials): it
	// keeps the seconds far from overflowing a time.Duration, and policy and
	// configuration cap what is granted anyway.
	if req.TTLSeconds < 0 || req.TTLSeconds > maxTTLSeconds {
		return badRequest("ttl_seconds must be between 0 and a year (31622400)")
	}
	cred, err := s.cfg.Broker.IssueNATS(r.Context(), broker.NATSRequest{
		Principal: p, UserKey: req.PublicKey, TTL: time.Duration(req.TTLSeconds) * time.Second,
		Via: "creds", Client: requestClient(r),
	})
	if errors.Is(err, broker.ErrTooManyNATSCredentials) {
		// The broker's text is safe to show: how many the caller holds,
		// the limit and how to free some.
		return &HTTPError{Status: http.StatusTooManyRequests, Code: broker.CodeRateLimited, Msg: err.Error(), Err: err}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.NATSCreds{
		JWT: cred.JWT, ExpiresAt: cred.ExpiresAt, InboxPrefix: cred.InboxPrefix, NATSURL: s.cfg.NATSURL,
		Pub: cred.Pub, Sub: cred.Sub, DecisionID: cred.Decision.ID, PolicyRevision: cred.Decision.Revision, Capped: cred.Capped,
	})
	return nil
}

// Lease listing bounds: a principal may hold any number of NATS
// credentials, and a response (or dashboard page) listing them all grew
// without limit.
const (
	defaultLeaseLimit = 100
	maxLeaseLimit     = 1000
)

// leasesPage is the response of `GET leases`: api.Leases plus `next`, the
// cursor of the following page, present only when more leases exist.
type leasesPage struct {
	Leases []api.Lease `json:"leases"`
	Next   string      `json:"next,omitempty"`
}

// listLeases serves `GET leases?limit=&cursor=`: the caller's NATS and SQL
// credentials, newest first, at most limit (default 100, at most 1000).
func (s *Server) listLeases(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	limit, err := intParam(r, "limit", defaultLeaseLimit)
	if err != nil {
		return err
	}
	if limit < 1 || limit > maxLeaseLimit {
		return badRequest(fmt.Sprintf("limit must be between 1 and %d", maxLeaseLimit))
	}
	var after *leaseCursor
	if v := r.URL.Query().Get("cursor"); v != "" {
		c, err := parseLeaseCursor(v)
		if err != nil {
			return err
		}
		after = &c
	}
	page := broker.ListPage{Limit: int(limit)}
	if after != nil {
		page.Before = &broker.ListCursor{IssuedAt: after.issuedAt, Key: after.id}
	}
	leases, more, err := s.leasePage(r.Context(), p, page)
	if err != nil {
		return err
	}
	out := leasesPage{Leases: leases}
	if more {
		out.Next = cursorOf(leases[len(leases)-1]).String()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// leaseCursor is the position of a lease in the newest-first order: issued
// at, then id, both descending.
type leaseCursor struct {
	issuedAt int64 // Unix nanoseconds
	id       string
}

func cursorOf(l api.Lease) leaseCursor { return leaseCursor{issuedAt: l.IssuedAt.UnixNano(), id: l.ID} }

// String encodes the cursor for the `next` field; clients pass it back
// unchanged.
func (c leaseCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.issuedAt, 10) + "." + c.id))
}

func parseLeaseCursor(v string) (leaseCursor, error) {
	bad := badRequest("cursor is not one this server returned (pass the `next` of the previous page unchanged)")
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return leaseCursor{}, bad
	}
	ts, id, ok := strings.Cut(string(raw), ".")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return leaseCursor{}, bad
	}
	return leaseCursor{issuedAt: n, id: id}, nil
}

// before reports whether a lease at c comes before one at o in the
// newest-first order.
func (c leaseCursor) before(o leaseCursor) bool {
	if c.issuedAt != o.issuedAt {
		return c.issuedAt > o.issuedAt
	}
	return c.id > o.id
}

// leasePage lists one page of p's NATS and SQL credentials, newest first
// (see [broker.ListPage]); more reports whether others follow. Each store
// is asked for page.Limit+1 rows after the cursor and the two newest-first
// lists are merged, so that a request holds at most 2*(page.Limit+1)
// credentials however many p holds.
func (s *Server) leasePage(ctx context.Context, p identity.Principal, page broker.ListPage) (out []api.Lease, more bool, err error) {
	now := s.now()
	ask := page
	ask.Limit, ask.At = page.Limit+1, now
	var all []api.Lease
	if s.cfg.Issuances != nil {
		list, err := s.cfg.Issuances.ByPrincipalPage(ctx, p.ID(), ask)
		if err != nil {
			return nil, false, errors.Join(broker.ErrUnavailable, err)
		}
		all = make([]api.Lease, 0, len(list)+ask.Limit)
		for _, iss := range list {
			all = append(all, natsLease(iss, now))
		}
	}
	if s.cfg.SQLLeases != nil {
		list, err := s.cfg.SQLLeases.LeasesPage(ctx, p.ID(), ask)
		if err != nil {
			return nil, false, errors.Join(broker.ErrUnavailable, err)
		}
		for i := range list {
			all = append(all, sqlLease(&list[i], now))
		}
	}
	var after *leaseCursor
	if page.Before != nil {
		after = &leaseCursor{issuedAt: page.Before.IssuedAt, id: page.Before.Key}
	}
	// Both lists are newest first and hold at most Limit+1 each: the
	// newest Limit+1 of their union are the page and whether more follow.
	all = slices.DeleteFunc(all, func(l api.Lease) bool { return after != nil && !after.before(cursorOf(l)) })
	slices.SortFunc(all, func(a, b api.Lease) int {
		switch ca, cb := cursorOf(a), cursorOf(b); {
		case ca.before(cb):
			return -1
		case cb.before(ca):
			return 1
		}
		return 0
	})
	if len(all) > page.Limit {
		return all[:page.Limit], true, nil
	}
	if all == nil {
		all = []api.Lease{}
	}
	return all, false, nil
}

func natsLease(iss broker.Issuance, now time.Time) api.Lease {
	state := "active"
	switch {
	case !iss.RevokedAt.IsZero():
		state = "revoked"
	case !now.Before(iss.ExpiresAt):
		state = "expired"
	}
	return api.Lease{
		ID: iss.UserKey, Type: "nats", Principal: iss.Principal.Display(), UserKey: iss.UserKey,
		State: state, IssuedAt: iss.IssuedAt, ExpiresAt: iss.ExpiresAt, RevokedAt: iss.RevokedAt,
	}
}

// revokeLease revokes one of the caller's credentials (admins: anyone's).
func (s *Server) revokeLease(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	id := r.PathValue("id")
	if handled, err := s.revokeSQLLease(w, r, p, s.cfg.SQLLeases, id); handled {
		return err
	}
	iss, err := s.revokeNATS(r.Context(), p, id, "revoked by "+p.Display())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, natsLease(iss, s.now()))
	return nil
}

// revokeNATS revokes one of p's NATS credentials (admins: anyone's); others'
// credentials are not found, so that their existence is not revealed.
func (s *Server) revokeNATS(ctx context.Context, p identity.Principal, userKey, reason string) (broker.Issuance, error) {
	if s.cfg.Issuances == nil {
		return broker.Issuance{}, broker.ErrNotFound
	}
	iss, err := s.cfg.Issuances.Get(ctx, userKey)
	if err != nil {
		return broker.Issuance{}, err
	}
	if iss.Principal.ID() != p.ID() && !s.inGroups(p, s.cfg.AdminGroups) {
		return broker.Issuance{}, broker.ErrNotFound
	}
	if err := s.cfg.Broker.RevokeNATS(ctx, p, []string{userKey}, reason); err != nil {
		return broker.Issuance{}, err
	}
	iss.RevokedAt = s.now()
	return iss, nil
}

// noEndpoint answers a request that no endpoint takes: 405 with Allow when
// the path exists for other methods, else 404; as a JSON error under /api/
// and as the dashboard's error page elsewhere (the mux alone answers in
// plain text). Neither message repeats the request's path or method back.
func (s *Server) noEndpoint(w http.ResponseWriter, r *http.Request) {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := &http.Request{Method: method, URL: r.URL, Host: r.Host}
		if _, pattern := s.mux.Handler(probe); method != r.Method && pattern != "/api/" && pattern != "/" && pattern != "" {
			allow = append(allow, method)
		}
	}
	status, code, msg := http.StatusNotFound, broker.CodeNotFound, "no such page"
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		status, code, msg = http.StatusMethodNotAllowed, broker.CodeInvalidRequest, "method not allowed here (allowed: "+strings.Join(allow, ", ")+")"
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		if status == http.StatusNotFound {
			msg = "no such API endpoint"
		}
		writeJSONError(w, status, code, msg, nil, id)
		return
	}
	s.renderError(w, r, status, msg, nil, id)
}
