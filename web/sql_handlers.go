package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// SQLLeases is the slice of the broker's SQL credential leases the web
// layer calls (wired in cmd/sqlgated over *broker.Leases).
type SQLLeases interface {
	IssueSQL(ctx context.Context, req broker.SQLCredRequest) (*broker.SQLCredential, error)
	RenewLease(ctx context.Context, actor identity.Principal, leaseID string, ttl time.Duration) (*broker.Renewal, error)
	RevokeLease(ctx context.Context, actor identity.Principal, leaseID, reason string) (*broker.Lease, error)
	RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error)
	// LeasesPage lists one page of a principal's SQL leases (by
	// Principal.ID()), newest first, reading at most page.Limit rows.
	LeasesPage(ctx context.Context, principalID string, page broker.ListPage) ([]broker.Lease, error)
	Lease(ctx context.Context, leaseID string) (broker.Lease, error)
}

var _ SQLLeases = (*broker.Leases)(nil)

// offboarder revokes everything a principal holds: [SQLLeases.RevokeAll]
// when SQL logins are configured, else the broker's own.
type offboarder interface {
	RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error)
}

// sqlRoutes registers `POST leases/revoke-all` (always: offboarding covers
// the sign-in cutoff, NATS credentials and dashboard sessions even where
// no database issues SQL logins) and, when SQL logins are configured, the
// SQL credential endpoints: `POST sql/creds`, `POST leases/{id}/renew`
// (without SQL logins those answer 404 saying so).
// Listing and revoking go through the lease endpoints
// ([Server.leasePage], [Server.revokeSQLLease]).
func (s *Server) sqlRoutes(l SQLLeases) {
	var off offboarder = s.cfg.Broker
	if l != nil {
		off = l
	}
	s.mux.Handle("POST "+api.Prefix+"/leases/revoke-all", s.authed(func(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
		return s.revokeAll(w, r, p, off)
	}))
	if l == nil {
		// Say why instead of the generic "no such API endpoint", which
		// reads like a CLI newer than the broker.
		noLogins := s.authed(func(http.ResponseWriter, *http.Request, identity.Principal) error {
			return errNoSQLLogins
		})
		s.mux.Handle("POST "+api.Prefix+"/sql/creds", noLogins)
		s.mux.Handle("POST "+api.Prefix+"/leases/{id}/renew", noLogins)
		return
	}
	s.mux.Handle("POST "+api.Prefix+"/sql/creds", s.credAuthed(func(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
		return s.sqlCreds(w, r, p, l)
	}))
	s.mux.Handle("POST "+api.Prefix+"/leases/{id}/renew", s.credAuthed(func(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
		return s.renewSQLLease(w, r, p, l)
	}))
}

// errNoSQLLogins answers the SQL credential endpoints of a broker that
// issues no SQL logins.
var errNoSQLLogins = &HTTPError{
	Status: http.StatusNotFound, Code: broker.CodeNotFound,
	Msg: "this broker issues no SQL logins (no postgresLogins or sqlserverLogins configured)",
}

func (s *Server) sqlCreds(w http.ResponseWriter, r *http.Request, p identity.Principal, l SQLLeases) error {
	var req api.SQLCredsRequest
	if err := decodeJSON(r, maxBody, &req); err != nil {
		return err
	}
	switch {
	case req.Database == "" || req.Role == "":
		return badRequest("database and role are required")
	case req.TTLSeconds < 0:
		return badRequest("ttl_seconds must not be negative")
	case req.TTLSeconds > maxTTLSeconds:
		return badRequest("ttl_seconds must be between 0 and a year (31622400)")
	}
	cred, err := l.IssueSQL(r.Context(), broker.SQLCredRequest{
		Principal: p, Database: req.Database, Role: req.Role, TTL: time.Duration(req.TTLSeconds) * time.Second,
		Client: requestClient(r),
	})
	if err != nil {
		return sqlError(err)
	}
	writeJSON(w, http.StatusOK, api.SQLCreds{
		LeaseID: cred.LeaseID, Database: cred.Database, Role: cred.Role, Username: cred.Username, Password: cred.Password,
		DSN: cred.DSN, ExpiresAt: cred.ExpiresAt, MaxExpiry: cred.MaxExpiry, Capped: cred.Capped,
	})
	return nil
}

func (s *Server) renewSQLLease(w http.ResponseWriter, r *http.Request, p identity.Principal, l SQLLeases) error {
	var req api.LeaseRenewRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return &HTTPError{Status: http.StatusRequestEntityTooLarge, Code: broker.CodeTooLarge, Msg: "request body too large"}
	}
	if len(bytes.TrimSpace(body)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decodeJSON(r, maxBody, &req); err != nil {
			return err
		}
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > maxTTLSeconds {
		return badRequest("ttl_seconds must be between 0 and a year (31622400)")
	}
	ren, err := l.RenewLease(clientContext(r), p, r.PathValue("id"), time.Duration(req.TTLSeconds)*time.Second)
	if err != nil {
		return sqlError(err)
	}
	writeJSON(w, http.StatusOK, api.LeaseRenewal{
		Lease: sqlLease(&ren.Lease, s.now()), MaxExpiry: ren.Lease.MaxExpiry, Capped: ren.Capped, DecisionID: ren.Decision.ID,
	})
	return nil
}

func (s *Server) revokeAll(w http.ResponseWriter, r *http.Request, p identity.Principal, l offboarder) error {
	if err := s.requireGroups(p, s.cfg.AdminGroups, "revoke-all"); err != nil {
		return err
	}
	var req api.RevokeAllRequest
	if err := decodeJSON(r, maxBody, &req); err != nil {
		return err
	}
	if req.Principal == "" || len(req.Principal) > 1024 || len(req.Reason) > broker.MaxReason {
		return badRequest(`principal ("<issuer> <subject>") is required; reason is at most 512 characters`)
	}
	if err := s.checkOffboardee(req.Principal); err != nil {
		// Nothing was done: no cutoff, no audit record, no session ended.
		return err
	}
	reason := "offboarding by " + p.Display()
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	// Before the revocations, so that the audit records of a revoke-all
	// of a principal nothing names say so. A failed read does not hold
	// the offboarding up: it is answered once the revocations are done.
	onRecord, cerr := s.principalOnRecord(r.Context(), req.Principal)
	if cerr == nil && !onRecord {
		reason += "; " + unknownPrincipalNote
	}
	res, err := l.RevokeAll(clientContext(r), p, req.Principal, reason)
	if res == nil && errors.Is(err, broker.ErrInvalid) {
		// Refused as not a principal before anything was done: nothing was
		// revoked, and no session is ended for it either. (An invalid
		// error joined to a result is a partial failure: the sessions end.)
		return sqlError(err)
	}
	// The sessions end whatever else failed (a NATS push retried in the
	// background, a database that keeps a lease revoking): the principal
	// must not keep browsing while revoke-all is repeated.
	ended, serr := s.sessions.backend.DeletePrincipalSessions(r.Context(), req.Principal)
	if serr != nil {
		s.log.ErrorContext(r.Context(), "revoke-all: dashboard sessions not ended", "err", serr)
	}
	switch {
	case err != nil:
		// What was revoked stays revoked; revoke-all is safe to repeat.
		return sqlError(err)
	case serr != nil:
		return &HTTPError{
			Status: http.StatusServiceUnavailable, Code: broker.CodeUnavailable,
			Msg: "credentials revoked, but the principal's dashboard sessions could not be ended; repeat revoke-all",
		}
	case cerr != nil:
		// Not answered as done: the admin could not be told whether the
		// id names anyone.
		return &HTTPError{
			Status: http.StatusServiceUnavailable, Code: broker.CodeUnavailable,
			Msg: "credentials revoked, but whether any credential names the principal could not be checked; repeat revoke-all",
			Err: cerr,
		}
	}
	out := api.RevokeAllResult{Principal: res.PrincipalID, NATSRevoked: res.NATSKeys, Leases: []api.Lease{}, Pending: res.Pending(), SessionsEnded: ended}
	if out.NATSRevoked == nil {
		out.NATSRevoked = []string{}
	}
	now := s.now()
	for i := range res.Leases {
		out.Leases = append(out.Leases, sqlLease(&res.Leases[i], now))
	}
	if !onRecord && len(res.NATSKeys) == 0 && len(res.Leases) == 0 && ended == 0 {
		out.UnknownPrincipal = true
		s.log.WarnContext(r.Context(), "revoke-all of a principal that no credential, lease or session names", "principal", req.Principal)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeSQLLease serves `DELETE leases/{id}` for SQL leases: the owner or an
// admin may revoke. handled is false when id is not a SQL lease, so that
// the caller goes on with NATS credentials. A revocation that has not
// finished yet answers 202 with state "revoking" and the last attempt's
// error (retried until done).
// revokeSQL revokes one of p's SQL leases (admins: anyone's). handled is
// false when id is not a SQL lease.
func (s *Server) revokeSQL(ctx context.Context, p identity.Principal, l SQLLeases, id string) (*broker.Lease, bool, error) {
	if l == nil {
		return nil, false, nil
	}
	lease, err := l.Lease(ctx, id)
	if errors.Is(err, broker.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, sqlError(err)
	}
	owner := lease.Principal.ID() == p.ID()
	if !owner && !s.inGroups(p, s.cfg.AdminGroups) {
		return nil, true, broker.ErrNotFound // do not reveal others' leases
	}
	reason := "revoked by " + p.Display()
	if !owner {
		reason += " (admin)"
	}
	got, err := l.RevokeLease(ctx, p, id, reason)
	if err != nil {
		return nil, true, sqlError(err)
	}
	return got, true, nil
}

func (s *Server) revokeSQLLease(w http.ResponseWriter, r *http.Request, p identity.Principal, l SQLLeases, id string) (handled bool, err error) {
	got, handled, err := s.revokeSQL(clientContext(r), p, l, id)
	if !handled || err != nil {
		return handled, err
	}
	status := http.StatusOK
	if !got.State.Final() {
		status = http.StatusAccepted
	}
	writeJSON(w, status, sqlLease(got, s.now()))
	return true, nil
}

// requestClient is the client policy and the audit log see for r: its
// address and user agent, bounded as on every transport
// ([broker.BoundClient]).
func requestClient(r *http.Request) policy.Client {
	return broker.BoundClient(policy.Client{Host: r.RemoteAddr, Name: r.UserAgent()})
}

// clientContext is r's context carrying [requestClient] for the lease
// operations that take it from there (renew, revoke, revoke-all).
func clientContext(r *http.Request) context.Context {
	return broker.WithClient(r.Context(), requestClient(r))
}

// sqlLease is the API view of a lease. An active lease past its expiry
// (the reaper has not run yet) shows as "expired"; a revoking one carries
// why its last attempt failed (the lease store keeps only what
// broker's safeError let through: scrubbed database messages or an error
// class).
func sqlLease(l *broker.Lease, now time.Time) api.Lease {
	state := string(l.State)
	if l.State == broker.LeaseActive && !now.Before(l.ExpiresAt) {
		state = "expired"
	}
	out := api.Lease{
		ID: l.ID, Type: "sql", Principal: l.Principal.Display(), Database: l.Database, Role: l.Role, Username: l.Username,
		State: state, IssuedAt: l.IssuedAt, ExpiresAt: l.ExpiresAt, RevokedAt: l.RevokedAt,
	}
	if l.State == broker.LeaseRevoking {
		out.LastError = l.LastError
	}
	return out
}

// sqlError maps what the SQL credential use cases return that
// [publicError] does not know: a database's refusal (502 db_error, message
// scrubbed by the adapter) and too many leases (429).
func sqlError(err error) error {
	var dbe *broker.DBError
	switch {
	case errors.As(err, &dbe):
		return &HTTPError{Status: http.StatusBadGateway, Code: broker.CodeDBError, Msg: dbe.Error(), Err: err}
	case errors.Is(err, broker.ErrTooManyLeases):
		return &HTTPError{Status: http.StatusTooManyRequests, Code: broker.CodeRateLimited, Msg: "too many active SQL credentials; revoke some first", Err: err}
	}
	return err
}
