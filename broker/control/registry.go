package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sqlgate/sqlgate/broker"
)

// DefaultCacheTTL bounds how long a cached issuance is trusted before the
// control database is read again (another instance may have revoked it).
const DefaultCacheTTL = 2 * time.Second

// The statements of the registry that the golden files show per dialect
// (testdata/registry_*.golden), as [DB.q] rewrites them.
const (
	// sqlPutLock is Put's first statement: it changes nothing, and locks.
	sqlPutLock    = `UPDATE sqlgate_issuance SET expires_at = expires_at WHERE user_key = ?`
	sqlBindUpdate = `UPDATE sqlgate_callout_token SET token_hash = ?, token_expires_at = ?, expires_at = CASE WHEN expires_at < ? THEN ? ELSE expires_at END
		WHERE user_key = ? AND refused_at IS NULL`
	sqlBindInsert = `INSERT INTO sqlgate_callout_token (user_key, token_hash, token_expires_at, expires_at, refused_at) VALUES (?, ?, ?, ?, NULL)`
	// sqlRefuse refuses a key's token and keeps the record until the token
	// expires.
	sqlRefuse = `UPDATE sqlgate_callout_token SET refused_at = ?, expires_at = CASE WHEN expires_at < token_expires_at THEN token_expires_at ELSE expires_at END
		WHERE user_key = ? AND refused_at IS NULL`
	// sqlRefused counts the refusals of two token hashes (a token's and its
	// legacy one: one read per callout check).
	sqlRefused     = `SELECT COUNT(*) FROM sqlgate_callout_token WHERE token_hash IN (?, ?) AND refused_at IS NOT NULL`
	sqlPruneTokens = `DELETE FROM sqlgate_callout_token WHERE expires_at < ?` //nolint:gosec // G101: SQL text naming the token table, no credential
	// sqlWithdraw removes an unreleased issuance (Withdraw).
	sqlWithdraw = `DELETE FROM sqlgate_issuance WHERE user_key = ? AND decision_id = ? AND revoked_at IS NULL`
)

// putUpdateQuery renews a key's issuance only if it is as Put read it.
// Arguments: the columns set, the user key, [principalArgs], expires_at,
// pub.
func putUpdateQuery(dialect string) string {
	return `UPDATE sqlgate_issuance SET principal = ?, signing_key = ?, account = ?, via = ?, issued_at = ?, expires_at = ?, revoked_at = ?, decision_id = ?, pub = ?
		WHERE user_key = ? AND ` + principalIs(dialect) + ` AND revoked_at IS NULL AND expires_at = ? AND pub = ?`
}

// countLiveQuery counts a principal's live issuances (CountLive).
// Arguments: [principalArgs], the time.
func countLiveQuery(dialect string) string {
	return `SELECT COUNT(*) FROM sqlgate_issuance WHERE ` + principalIs(dialect) + ` AND revoked_at IS NULL AND expires_at > ?`
}

// Registry is the issuance registry in the control database with an
// in-memory read cache for the request path.
type Registry struct {
	db       *DB
	cacheTTL time.Duration
	now      func() time.Time

	mu    sync.RWMutex
	cache map[string]cached

	schemaMu sync.Mutex
	schemaOK bool // the callout token table exists
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
// (the NATS servers' revocation covers only JWTs issued before it).
//
// A key issued again keeps the latest expiry of all its JWTs, and, while
// the earlier JWTs are unexpired, the union of what they may publish: a
// client that refreshes its credential with a shorter TTL still holds the
// earlier, longer-lived JWT, so the key stays live (for revocation,
// revoke-all and the request path) until the last of its JWTs expires.
//
// The write is a conditional UPDATE on the row as it was read (not revoked,
// same principal, same expiry and pub), or, for a new key, an INSERT the
// primary key guards: a revocation or another issuance by another instance
// in between is never undone; the Put reads again and retries.
func (r *Registry) Put(ctx context.Context, iss broker.Issuance) error {
	_, err := r.PutIssuance(ctx, iss)
	return err
}

// PutIssuance is Put, and reports whether the key already had an issuance
// unexpired at iss.IssuedAt (which iss extends: a refresh, though the
// caller's earlier read may not have seen it).
func (r *Registry) PutIssuance(ctx context.Context, iss broker.Issuance) (heldLive bool, err error) {
	principal, err := json.Marshal(iss.Principal)
	if err != nil {
		return false, fmt.Errorf("encode principal: %w", err)
	}
	if _, err := json.Marshal(iss.Pub); err != nil {
		return false, fmt.Errorf("encode pub: %w", err)
	}
	var last error
	for range putAttempts {
		merged, held, err := r.put(ctx, iss, string(principal))
		if err == nil {
			r.store(merged)
			return held, nil
		}
		if !errors.Is(err, errPutRace) && !r.db.deadlockVictim(err) {
			return false, err
		}
		last = err
	}
	return false, fmt.Errorf("put issuance: %d attempts: %w", putAttempts, last)
}

// putAttempts bounds the attempts of a Put that raced other writes of the
// same key, or that SQL Server rolled back as a deadlock victim (1205).
const putAttempts = 5

// errPutRace fails an attempt of Put that raced another write of the key:
// the next attempt reads the key again.
var errPutRace = errors.New("the key was written concurrently")

// put is one attempt of Put. It fails with errPutRace when the key was
// written between its read and its write (or inserted by another instance
// first: the insert fails, and another attempt tells).
func (r *Registry) put(ctx context.Context, iss broker.Issuance, principal string) (_ broker.Issuance, heldLive bool, _ error) {
	tx, err := r.db.db.BeginTx(ctx, nil)
	if err != nil {
		return iss, false, fmt.Errorf("put issuance: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	// Write first: SQLite takes its write lock now (a transaction that read
	// first cannot write once another connection has written), PostgreSQL
	// and SQL Server lock the key's row, so Puts of one key take turns.
	if _, err := tx.ExecContext(ctx, r.db.q(sqlPutLock), r.db.key(iss.UserKey)); err != nil {
		return iss, false, fmt.Errorf("put issuance: %w", err)
	}
	var (
		owner, oldPub string
		oldExpires    int64
		revoked       sql.NullInt64
	)
	err = tx.QueryRowContext(ctx, r.db.q(`SELECT principal_id, revoked_at, expires_at, pub FROM sqlgate_issuance WHERE user_key = ?`),
		r.db.key(iss.UserKey)).Scan(&owner, &revoked, &oldExpires, &oldPub)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// A new key. Should another Put insert the same key first, the
		// primary key refuses this insert, and the next attempt reads it.
		pub, _ := json.Marshal(iss.Pub)
		_, err = tx.ExecContext(ctx, r.db.q(`INSERT INTO sqlgate_issuance
			(user_key, principal_id, principal, signing_key, account, via, issued_at, expires_at, revoked_at, decision_id, pub)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			r.db.key(iss.UserKey), iss.Principal.ID(), principal, iss.SigningKey, iss.Account, iss.Via,
			iss.IssuedAt.UnixNano(), iss.ExpiresAt.UnixNano(), nullTime(iss.RevokedAt), r.db.key(iss.DecisionID), string(pub))
		if err != nil {
			return iss, false, fmt.Errorf("put issuance: %w: %w", errPutRace, err)
		}
	case err != nil:
		return iss, false, fmt.Errorf("put issuance: %w", err)
	case owner != iss.Principal.ID():
		return iss, false, fmt.Errorf("%w: public key already issued to another principal", broker.ErrInvalid)
	case revoked.Valid:
		return iss, false, fmt.Errorf("%w: public key was revoked; generate a new key pair", broker.ErrInvalid)
	default:
		var prevPub []string
		if err := json.Unmarshal([]byte(oldPub), &prevPub); err != nil {
			return iss, false, fmt.Errorf("put issuance: decode pub: %w", err)
		}
		heldLive = time.Unix(0, oldExpires).After(iss.IssuedAt)
		iss = mergeIssuance(iss, time.Unix(0, oldExpires).UTC(), prevPub)
		pub, err := json.Marshal(iss.Pub)
		if err != nil {
			return iss, false, fmt.Errorf("encode pub: %w", err)
		}
		args := []any{
			principal, iss.SigningKey, iss.Account, iss.Via, iss.IssuedAt.UnixNano(), iss.ExpiresAt.UnixNano(),
			nullTime(iss.RevokedAt), r.db.key(iss.DecisionID), string(pub), r.db.key(iss.UserKey),
		}
		args = append(append(args, principalArgs(r.db.dialect, owner)...), oldExpires, oldPub)
		res, err := tx.ExecContext(ctx, r.db.q(putUpdateQuery(r.db.dialect)), args...)
		if err != nil {
			return iss, false, fmt.Errorf("put issuance: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return iss, false, fmt.Errorf("put issuance: %w", err)
		}
		if n == 0 {
			return iss, false, errPutRace // revoked, pruned or issued again since the read
		}
	}
	if err := tx.Commit(); err != nil {
		return iss, false, fmt.Errorf("put issuance: %w", err)
	}
	return iss, heldLive, nil
}

// mergeIssuance is iss issued again for a key whose JWTs so far expire at
// prevExpires and may publish prevPub: the key's expiry is the later one,
// and while an earlier JWT is unexpired at the new issuance its subjects
// stay in the key's pub.
func mergeIssuance(iss broker.Issuance, prevExpires time.Time, prevPub []string) broker.Issuance {
	if !prevExpires.After(iss.IssuedAt) {
		return iss // every earlier JWT has expired
	}
	if prevExpires.After(iss.ExpiresAt) {
		iss.ExpiresAt = prevExpires
	}
	pub := slices.Clone(iss.Pub)
	for _, s := range prevPub {
		if !slices.Contains(pub, s) {
			pub = append(pub, s)
		}
	}
	iss.Pub = pub
	return iss
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
		FROM sqlgate_issuance WHERE user_key = ?`), r.db.key(userKey))
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
		t.UnixNano(), r.db.key(userKey)); err != nil {
		return fmt.Errorf("revoke issuance: %w", err)
	}
	r.mu.Lock()
	delete(r.cache, userKey)
	r.mu.Unlock()
	return nil
}

// Withdraw removes the unrevoked issuance of userKey recorded by
// decisionID (its JWT never left sqlgated); another decision's issuance of
// the key is left alone.
func (r *Registry) Withdraw(ctx context.Context, userKey, decisionID string) error {
	if _, err := r.db.db.ExecContext(ctx, r.db.q(sqlWithdraw), r.db.key(userKey), r.db.key(decisionID)); err != nil {
		return fmt.Errorf("withdraw issuance: %w", err)
	}
	r.mu.Lock()
	delete(r.cache, userKey)
	r.mu.Unlock()
	return nil
}

// ByPrincipal lists a principal's issuances, newest first.
func (r *Registry) ByPrincipal(ctx context.Context, principalID string) ([]broker.Issuance, error) {
	out, err := r.list(ctx, `WHERE `+principalIs(r.db.dialect), principalArgs(r.db.dialect, principalID)...)
	if err != nil {
		return nil, err
	}
	return issuancesOf(out, principalID), nil
}

// issuancesOf keeps the issuances of principalID (exactly: the statements
// select them so, and this holds whatever the column's collation).
func issuancesOf(is []broker.Issuance, principalID string) []broker.Issuance {
	return slices.DeleteFunc(is, func(iss broker.Issuance) bool { return iss.Principal.ID() != principalID })
}

// CountLive counts a principal's issuances live at t (not revoked, expiring
// after t), reading the control database, never the cache: what the broker
// holds against [broker.Config.MaxNATSCredentialsPerPrincipal].
func (r *Registry) CountLive(ctx context.Context, principalID string, t time.Time) (int, error) {
	var n int
	args := append(principalArgs(r.db.dialect, principalID), t.UnixNano())
	if err := r.db.db.QueryRowContext(ctx, r.db.q(countLiveQuery(r.db.dialect)), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count live issuances: %w", err)
	}
	return n, nil
}

// issuanceCols are the columns an issuance is read from, in scanIssuance
// order.
const issuanceCols = `user_key, principal, signing_key, account, via, issued_at, expires_at, revoked_at, decision_id, pub`

// issuancePage is how a page of a principal's issuances is read: see
// [pageQuery].
var issuancePage = pageSpec{
	cols: issuanceCols, table: "sqlgate_issuance", key: "user_key",
	live:  `revoked_at IS NULL AND expires_at > ?`,
	ended: `(revoked_at IS NOT NULL OR expires_at <= ?)`,
}

// ByPrincipalPage lists one page of a principal's issuances, newest first
// (by issue time, then user key), reading at most page.Limit rows; an
// invalid page is an error wrapping [broker.ErrInvalid].
func (r *Registry) ByPrincipalPage(ctx context.Context, principalID string, page broker.ListPage) ([]broker.Issuance, error) {
	if err := page.Check(); err != nil {
		return nil, err
	}
	query, args := pageQuery(r.db.dialect, issuancePage, principalID, page)
	rows, err := r.db.db.QueryContext(ctx, r.db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list issuances: %w", err)
	}
	out, err := scanIssuances(rows, min(page.Limit, 128))
	if err != nil {
		return nil, err
	}
	return issuancesOf(out, principalID), nil
}

// IssuanceListSchema returns the DDL of the index that reads a principal's
// issuances newest first ([Registry.ByPrincipalPage]) for a dialect
// (idempotent statements), for operators who create the schema themselves.
func IssuanceListSchema(dialect string) []string {
	if dialect == SQLServer {
		return []string{sqlServerIndex("sqlgate_issuance_principal_issued", "sqlgate_issuance", "principal_id, issued_at")}
	}
	return []string{"CREATE INDEX IF NOT EXISTS sqlgate_issuance_principal_issued ON sqlgate_issuance (principal_id, issued_at)"}
}

// pageSpec is a table whose rows are listed a page at a time, newest first:
// the columns read, the key that orders rows issued at the same time, and
// the conditions (one `?`: the time) of [broker.ListLive] and
// [broker.ListEnded].
type pageSpec struct{ cols, table, key, live, ended string }

// pageQuery returns the statement (with `?` placeholders, for [DB.q]) that
// reads one page of principalID's rows of spec (exactly: [principalIs]),
// and its arguments. The key compares bytewise in every dialect
// (PostgreSQL COLLATE "C", SQL Server Latin1_General_BIN2, SQLite's
// default), as the web layer merges pages. No value is formatted into the
// text.
func pageQuery(dialect string, spec pageSpec, principalID string, page broker.ListPage) (string, []any) {
	key := spec.key
	switch dialect {
	case Postgres:
		key += ` COLLATE "C"`
	case SQLServer:
		key += ` COLLATE Latin1_General_BIN2`
	}
	var (
		b    strings.Builder
		args []any
	)
	b.WriteString("SELECT ")
	if dialect == SQLServer {
		b.WriteString("TOP (?) ")
		args = append(args, page.Limit)
	}
	b.WriteString(spec.cols + " FROM " + spec.table + " WHERE " + principalIs(dialect))
	args = append(args, principalArgs(dialect, principalID)...)
	switch page.Filter {
	case broker.ListLive:
		b.WriteString(" AND " + spec.live)
		args = append(args, page.At.UnixNano())
	case broker.ListEnded:
		b.WriteString(" AND " + spec.ended)
		args = append(args, page.At.UnixNano())
	}
	if c := page.Before; c != nil {
		b.WriteString(" AND (issued_at < ? OR (issued_at = ? AND " + key + " < ?))")
		args = append(args, c.IssuedAt, c.IssuedAt, c.Key)
	}
	b.WriteString(" ORDER BY issued_at DESC, " + key + " DESC")
	if dialect != SQLServer {
		b.WriteString(" LIMIT ?")
		args = append(args, page.Limit)
	}
	return b.String(), args
}

// RevokedActive lists revoked issuances that have not expired at t: the
// revocations NATS servers must still enforce.
func (r *Registry) RevokedActive(ctx context.Context, t time.Time) ([]broker.Issuance, error) {
	return r.list(ctx, `WHERE revoked_at IS NOT NULL AND expires_at > ?`, t.UnixNano())
}

func (r *Registry) list(ctx context.Context, where string, args ...any) ([]broker.Issuance, error) {
	rows, err := r.db.db.QueryContext(ctx, r.db.q(`SELECT `+issuanceCols+`
		FROM sqlgate_issuance `+where+` ORDER BY issued_at DESC`), args...)
	if err != nil {
		return nil, fmt.Errorf("list issuances: %w", err)
	}
	return scanIssuances(rows, 0)
}

// scanIssuances reads and closes rows of issuances (room: the capacity to
// start with).
func scanIssuances(rows *sql.Rows, room int) ([]broker.Issuance, error) {
	defer rows.Close()
	out := make([]broker.Issuance, 0, room)
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

// Prune deletes issuances that expired before t, and the records of the
// tokens that obtained callout credentials: those of credentials expired
// before t, and refused ones once the token expired before t.
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
	if err := r.calloutTokens(ctx); err != nil {
		return int(n), err
	}
	if _, err := r.db.db.ExecContext(ctx, r.db.q(sqlPruneTokens), before.UnixNano()); err != nil {
		return int(n), fmt.Errorf("prune callout tokens: %w", err)
	}
	return int(n), nil
}

// CalloutTokenSchema returns the DDL of the table that remembers which
// bearer token obtained each auth callout credential (by its SHA-256, never
// the token) and which of those tokens are refused, for a dialect
// (idempotent statements), for operators who create the schema themselves.
// The registry creates it when missing.
func CalloutTokenSchema(dialect string) []string {
	table := "CREATE TABLE IF NOT EXISTS sqlgate_callout_token ("
	index := "CREATE INDEX IF NOT EXISTS sqlgate_callout_token_hash ON sqlgate_callout_token (token_hash)"
	expIndex := "CREATE INDEX IF NOT EXISTS sqlgate_callout_token_expires ON sqlgate_callout_token (expires_at)"
	if dialect == SQLServer {
		table = "IF OBJECT_ID(N'sqlgate_callout_token', N'U') IS NULL CREATE TABLE sqlgate_callout_token ("
		index = sqlServerIndex("sqlgate_callout_token_hash", "sqlgate_callout_token", "token_hash")
		expIndex = sqlServerIndex("sqlgate_callout_token_expires", "sqlgate_callout_token", "expires_at")
	}
	return []string{
		table + `
			user_key VARCHAR(64) NOT NULL PRIMARY KEY,
			token_hash VARCHAR(64) NOT NULL,
			token_expires_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL,
			refused_at BIGINT)`,
		index,
		expIndex,
	}
}

// calloutTokens creates the callout token table once per registry; a
// failure is returned and the next call tries again.
func (r *Registry) calloutTokens(ctx context.Context) error {
	r.schemaMu.Lock()
	defer r.schemaMu.Unlock()
	if r.schemaOK {
		return nil
	}
	if err := r.db.createSchema(ctx, CalloutTokenSchema(r.db.dialect)); err != nil {
		return fmt.Errorf("control database: create callout token table: %w", err)
	}
	r.schemaOK = true
	return nil
}

// noExpiry stands for the expiry of a token without one: it is refused for
// good.
const noExpiry = math.MaxInt64

// BindCalloutToken records that the bearer token with hex SHA-256
// tokenHash, valid until tokenExpiry (zero: no expiry), obtained the auth
// callout credential of userKey, valid until keyExpiry. The record is kept
// until the credential expires, or, once the token is refused, until the
// token expires. A key whose token is refused keeps it.
func (r *Registry) BindCalloutToken(ctx context.Context, userKey, tokenHash string, keyExpiry, tokenExpiry time.Time) error {
	if err := r.calloutTokens(ctx); err != nil {
		return err
	}
	tokenExp := int64(noExpiry)
	if !tokenExpiry.IsZero() {
		tokenExp = tokenExpiry.UnixNano()
	}
	res, err := r.db.db.ExecContext(ctx, r.db.q(sqlBindUpdate),
		r.db.key(tokenHash), tokenExp, keyExpiry.UnixNano(), keyExpiry.UnixNano(), r.db.key(userKey))
	if err != nil {
		return fmt.Errorf("bind callout token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("bind callout token: %w", err)
	} else if n > 0 {
		return nil
	}
	// A new key (or one whose token is refused: the primary key refuses
	// the insert, and the key's issuance with it).
	if _, err := r.db.db.ExecContext(ctx, r.db.q(sqlBindInsert),
		r.db.key(userKey), r.db.key(tokenHash), tokenExp, keyExpiry.UnixNano()); err != nil {
		return fmt.Errorf("bind callout token: %w", err)
	}
	return nil
}

// RefuseCalloutTokens refuses, from t until they expire, the bearer tokens
// that obtained the auth callout credentials of userKeys. Keys without a
// recorded token (issued by `POST nats/creds`, or unknown) are skipped.
func (r *Registry) RefuseCalloutTokens(ctx context.Context, userKeys []string, t time.Time) error {
	if len(userKeys) == 0 {
		return nil
	}
	if err := r.calloutTokens(ctx); err != nil {
		return err
	}
	for _, k := range userKeys {
		if _, err := r.db.db.ExecContext(ctx, r.db.q(sqlRefuse), t.UnixNano(), r.db.key(k)); err != nil {
			return fmt.Errorf("refuse callout token: %w", err)
		}
	}
	return nil
}

// CalloutTokenRefused reports whether a bearer token with one of the hex
// SHA-256 tokenHashes obtained an auth callout credential that was revoked
// since, in one query per two hashes (a token's hash and its legacy hash:
// one). It reads the control database, never a cache.
func (r *Registry) CalloutTokenRefused(ctx context.Context, tokenHashes ...string) (bool, error) {
	if err := r.calloutTokens(ctx); err != nil {
		return false, err
	}
	for i := 0; i < len(tokenHashes); i += 2 {
		a, b := tokenHashes[i], tokenHashes[min(i+1, len(tokenHashes)-1)]
		var n int
		if err := r.db.db.QueryRowContext(ctx, r.db.q(sqlRefused),
			r.db.key(a), r.db.key(b)).Scan(&n); err != nil {
			return false, fmt.Errorf("read callout token refusals: %w", err)
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
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

var (
	_ broker.Registry            = (*Registry)(nil)
	_ broker.LiveIssuanceCounter = (*Registry)(nil)
	_ broker.CalloutTokens       = (*Registry)(nil)
)
