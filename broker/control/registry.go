package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sqlgate/sqlgate/broker"
)

// DefaultCacheTTL bounds how long a cached issuance is trusted before the
// control database is read again (another instance may have revoked it).
const DefaultCacheTTL = 2 * time.Second

// Registry is the issuance registry in the control database with an
// in-memory read cache for the request path.
type Registry struct {
	db       *DB
	cacheTTL time.Duration
	now      func() time.Time

	mu    sync.RWMutex
	cache map[string]cached
}

type cached struct {
	iss     broker.Issuance
	fetched time.Time
}

// NewRegistry returns a registry over db. cacheTTL <= 0 selects
// [DefaultCacheTTL].
func NewRegistry(db *DB, cacheTTL time.Duration, now func() time.Time) *Registry {
	if cacheTTL <= 0 {
		cacheTTL = DefaultCacheTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Registry{db: db, cacheTTL: cacheTTL, now: now, cache: map[string]cached{}}
}

// Put stores an issuance. It replaces the issuance of the same key only
// when that one belongs to the same principal and is not revoked; otherwise
// it changes nothing and returns an error wrapping [broker.ErrInvalid]: a
// key belongs to one principal, and a revoked key is never issued again
// (the NATS servers' revocation covers only JWTs issued before it). The
// check and the write are one conditional UPDATE (or, for a new key, an
// INSERT the primary key guards), so a revocation by another instance
// cannot be undone by a concurrent Put.
func (r *Registry) Put(ctx context.Context, iss broker.Issuance) error {
	principal, err := json.Marshal(iss.Principal)
	if err != nil {
		return fmt.Errorf("encode principal: %w", err)
	}
	pub, err := json.Marshal(iss.Pub)
	if err != nil {
		return fmt.Errorf("encode pub: %w", err)
	}
	tx, err := r.db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put issuance: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	res, err := tx.ExecContext(ctx, r.db.q(`UPDATE sqlgate_issuance
		SET principal = ?, signing_key = ?, account = ?, via = ?, issued_at = ?, expires_at = ?, revoked_at = ?, decision_id = ?, pub = ?
		WHERE user_key = ? AND principal_id = ? AND revoked_at IS NULL`),
		string(principal), iss.SigningKey, iss.Account, iss.Via, iss.IssuedAt.UnixNano(), iss.ExpiresAt.UnixNano(),
		nullTime(iss.RevokedAt), iss.DecisionID, string(pub), iss.UserKey, iss.Principal.ID())
	if err != nil {
		return fmt.Errorf("put issuance: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("put issuance: %w", err)
	}
	if n == 0 {
		var (
			owner   string
			revoked sql.NullInt64
		)
		err := tx.QueryRowContext(ctx, r.db.q(`SELECT principal_id, revoked_at FROM sqlgate_issuance WHERE user_key = ?`), iss.UserKey).Scan(&owner, &revoked)
		switch {
		case err == nil && owner != iss.Principal.ID():
			return fmt.Errorf("%w: public key already issued to another principal", broker.ErrInvalid)
		case err == nil:
			return fmt.Errorf("%w: public key was revoked; generate a new key pair", broker.ErrInvalid)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("put issuance: %w", err)
		}
		// A new key. Should another instance insert the same key first, the
		// primary key refuses this insert.
		_, err = tx.ExecContext(ctx, r.db.q(`INSERT INTO sqlgate_issuance
			(user_key, principal_id, principal, signing_key, account, via, issued_at, expires_at, revoked_at, decision_id, pub)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			iss.UserKey, iss.Principal.ID(), string(principal), iss.SigningKey, iss.Account, iss.Via,
			iss.IssuedAt.UnixNano(), iss.ExpiresAt.UnixNano(), nullTime(iss.RevokedAt), iss.DecisionID, string(pub))
		if err != nil {
			return fmt.Errorf("put issuance: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put issuance: %w", err)
	}
	r.store(iss)
	return nil
}

// Get returns the issuance for a user key, from the cache when it is fresh.
func (r *Registry) Get(ctx context.Context, userKey string) (broker.Issuance, error) {
	now := r.now()
	r.mu.RLock()
	c, ok := r.cache[userKey]
	r.mu.RUnlock()
	if ok && now.Sub(c.fetched) < r.cacheTTL {
		return c.iss, nil
	}
	return r.Lookup(ctx, userKey)
}

// Lookup returns the issuance for a user key as the control database holds
// it now, never from the cache: for decisions that must see another
// instance's revocation at once.
func (r *Registry) Lookup(ctx context.Context, userKey string) (broker.Issuance, error) {
	row := r.db.db.QueryRowContext(ctx, r.db.q(`SELECT user_key, principal, signing_key, account, via, issued_at, expires_at, revoked_at, decision_id, pub
		FROM sqlgate_issuance WHERE user_key = ?`), userKey)
	iss, err := scanIssuance(row)
	if errors.Is(err, sql.ErrNoRows) {
		return broker.Issuance{}, broker.ErrNotFound
	}
	if err != nil {
		return broker.Issuance{}, fmt.Errorf("get issuance: %w", err)
	}
	r.store(iss)
	return iss, nil
}

// Revoke marks a key revoked at t. Unknown keys are not an error.
func (r *Registry) Revoke(ctx context.Context, userKey string, t time.Time) error {
	if _, err := r.db.db.ExecContext(ctx, r.db.q(`UPDATE sqlgate_issuance SET revoked_at = ? WHERE user_key = ? AND revoked_at IS NULL`),
		t.UnixNano(), userKey); err != nil {
		return fmt.Errorf("revoke issuance: %w", err)
	}
	r.mu.Lock()
	delete(r.cache, userKey)
	r.mu.Unlock()
	return nil
}

// ByPrincipal lists a principal's issuances, newest first.
func (r *Registry) ByPrincipal(ctx context.Context, principalID string) ([]broker.Issuance, error) {
	return r.list(ctx, `WHERE principal_id = ?`, principalID)
}

// RevokedActive lists revoked issuances that have not expired at t: the
// revocations NATS servers must still enforce.
func (r *Registry) RevokedActive(ctx context.Context, t time.Time) ([]broker.Issuance, error) {
	return r.list(ctx, `WHERE revoked_at IS NOT NULL AND expires_at > ?`, t.UnixNano())
}

func (r *Registry) list(ctx context.Context, where string, arg any) ([]broker.Issuance, error) {
	rows, err := r.db.db.QueryContext(ctx, r.db.q(`SELECT user_key, principal, signing_key, account, via, issued_at, expires_at, revoked_at, decision_id, pub
		FROM sqlgate_issuance `+where+` ORDER BY issued_at DESC`), arg)
	if err != nil {
		return nil, fmt.Errorf("list issuances: %w", err)
	}
	defer rows.Close()
	var out []broker.Issuance
	for rows.Next() {
		iss, err := scanIssuance(rows)
		if err != nil {
			return nil, fmt.Errorf("list issuances: %w", err)
		}
		out = append(out, iss)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list issuances: %w", err)
	}
	return out, nil
}

// Prune deletes issuances that expired before t.
func (r *Registry) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := r.db.db.ExecContext(ctx, r.db.q(`DELETE FROM sqlgate_issuance WHERE expires_at < ?`), before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune issuances: %w", err)
	}
	n, _ := res.RowsAffected()
	r.mu.Lock()
	for k, c := range r.cache {
		if c.iss.ExpiresAt.Before(before) {
			delete(r.cache, k)
		}
	}
	r.mu.Unlock()
	return int(n), nil
}

func (r *Registry) store(iss broker.Issuance) {
	r.mu.Lock()
	r.cache[iss.UserKey] = cached{iss: iss, fetched: r.now()}
	r.mu.Unlock()
}

type scanner interface{ Scan(dest ...any) error }

func scanIssuance(s scanner) (broker.Issuance, error) {
	var (
		iss             broker.Issuance
		principal, pub  string
		issued, expires int64
		revoked         sql.NullInt64
	)
	if err := s.Scan(&iss.UserKey, &principal, &iss.SigningKey, &iss.Account, &iss.Via, &issued, &expires, &revoked, &iss.DecisionID, &pub); err != nil {
		return iss, err
	}
	if err := json.Unmarshal([]byte(principal), &iss.Principal); err != nil {
		return iss, fmt.Errorf("decode principal: %w", err)
	}
	if err := json.Unmarshal([]byte(pub), &iss.Pub); err != nil {
		return iss, fmt.Errorf("decode pub: %w", err)
	}
	iss.IssuedAt = time.Unix(0, issued).UTC()
	iss.ExpiresAt = time.Unix(0, expires).UTC()
	if revoked.Valid {
		iss.RevokedAt = time.Unix(0, revoked.Int64).UTC()
	}
	return iss, nil
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

var _ broker.Registry = (*Registry)(nil)
