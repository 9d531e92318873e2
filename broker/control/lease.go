package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/broker"
)

// LeaseStore keeps SQL credential leases in the control database (table
// sqlgate_lease). Every state change is a single conditional UPDATE, and
// the reaper's claims lock the rows they read (PostgreSQL FOR UPDATE SKIP
// LOCKED, SQL Server UPDLOCK, READPAST, ROWLOCK; SQLite has one writer), so
// several sqlgated instances sharing the database never claim one lease
// twice. Times are stored as Unix nanoseconds.
type LeaseStore struct {
	db *DB
}

// OpenLeaseStore creates the lease table and its indexes when missing and
// returns the store.
func OpenLeaseStore(ctx context.Context, db *DB) (*LeaseStore, error) {
	if err := db.createSchema(ctx, LeaseSchema(db.dialect)); err != nil {
		return nil, fmt.Errorf("control database: create lease table: %w", err)
	}
	return &LeaseStore{db: db}, nil
}

// LeaseSchema returns the DDL of the lease table for a dialect (idempotent
// statements), for operators who create the schema themselves.
func LeaseSchema(dialect string) []string {
	text, str, pid := "TEXT", "VARCHAR", "VARCHAR(512)"
	if dialect == SQLServer {
		text, str, pid = "NVARCHAR(MAX)", "NVARCHAR", sqlServerPrincipalID
	}
	body := fmt.Sprintf(`
			id VARCHAR(64) NOT NULL PRIMARY KEY,
			principal_id %[3]s NOT NULL,
			principal %[1]s NOT NULL,
			database_name %[2]s(128) NOT NULL,
			role_name %[2]s(128) NOT NULL,
			username VARCHAR(128) NOT NULL,
			state VARCHAR(16) NOT NULL,
			issued_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL,
			max_expires_at BIGINT NOT NULL,
			revoked_at BIGINT,
			decision_id VARCHAR(64) NOT NULL,
			reason %[1]s,
			attempts INTEGER NOT NULL,
			next_attempt BIGINT NOT NULL,
			last_error %[1]s,
			claim_token VARCHAR(64),
			claim_owner %[2]s(256),
			claim_until BIGINT,
			updated_at BIGINT NOT NULL`, text, str, pid)
	index := func(name, cols string) string {
		if dialect == SQLServer {
			return sqlServerIndex(name, "sqlgate_lease", cols)
		}
		return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON sqlgate_lease (%s)", name, cols)
	}
	table := "CREATE TABLE IF NOT EXISTS sqlgate_lease (" + body + ")"
	if dialect == SQLServer {
		table = "IF OBJECT_ID(N'sqlgate_lease', N'U') IS NULL CREATE TABLE sqlgate_lease (" + body + ")"
	}
	return []string{
		table,
		index("sqlgate_lease_principal", "principal_id"),
		index("sqlgate_lease_principal_issued", "principal_id, issued_at"),
		index("sqlgate_lease_due", "state, next_attempt"),
		index("sqlgate_lease_expiry", "state, expires_at"),
		index("sqlgate_lease_username", "username"),
		// A principal's unfinished leases (the limit at every issue,
		// revoke-all): found without reading the finished ones.
		index("sqlgate_lease_principal_state", "principal_id, state"),
	}
}

// leaseCols are the columns a lease is read from, in scanLease order.
var leaseCols = []string{
	"id", "principal", "database_name", "role_name", "username", "state", "issued_at", "expires_at",
	"max_expires_at", "revoked_at", "decision_id", "reason", "attempts", "next_attempt", "last_error", "updated_at",
}

var selectLease = "SELECT " + strings.Join(leaseCols, ", ") + " FROM sqlgate_lease"

// Create implements [broker.LeaseStore].
func (s *LeaseStore) Create(ctx context.Context, l *broker.Lease, c broker.Claim) error {
	principal, err := json.Marshal(l.Principal)
	if err != nil {
		return fmt.Errorf("encode principal: %w", err)
	}
	_, err = s.db.db.ExecContext(ctx, s.db.q(`INSERT INTO sqlgate_lease
		(id, principal_id, principal, database_name, role_name, username, state, issued_at, expires_at, max_expires_at,
		 decision_id, attempts, next_attempt, claim_token, claim_owner, claim_until, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`),
		s.db.key(l.ID), l.Principal.ID(), string(principal), l.Database, l.Role, l.Username, string(broker.LeaseCreating),
		l.IssuedAt.UnixNano(), l.ExpiresAt.UnixNano(), l.MaxExpiry.UnixNano(), s.db.key(l.DecisionID),
		l.IssuedAt.UnixNano(), s.db.key(c.Token), c.Owner, c.Until.UnixNano(), l.IssuedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("create lease: %w", err)
	}
	return nil
}

// Get implements [broker.LeaseStore].
func (s *LeaseStore) Get(ctx context.Context, id string) (broker.Lease, error) {
	l, err := scanLease(s.db.db.QueryRowContext(ctx, s.db.q(selectLease+` WHERE id = ?`), s.db.key(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return broker.Lease{}, broker.ErrNotFound
	}
	if err != nil {
		return broker.Lease{}, fmt.Errorf("get lease: %w", err)
	}
	return l, nil
}

// ByPrincipal implements [broker.LeaseStore].
func (s *LeaseStore) ByPrincipal(ctx context.Context, principalID string) ([]broker.Lease, error) {
	rows, err := s.db.db.QueryContext(ctx, s.db.q(selectLease+` WHERE `+principalIs(s.db.dialect)+` ORDER BY issued_at DESC, id DESC`),
		principalArgs(s.db.dialect, principalID)...)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return leasesOf(out, principalID), nil
}

// leasesOf keeps the leases of principalID (exactly: the statements select
// them so, and this holds whatever the column's collation).
func leasesOf(ls []broker.Lease, principalID string) []broker.Lease {
	return slices.DeleteFunc(ls, func(l broker.Lease) bool { return l.Principal.ID() != principalID })
}

// unfinishedStates are the states of a lease that is not final, as an SQL
// list (served with principal_id by sqlgate_lease_principal_state).
const unfinishedStates = `state IN ('creating', 'active', 'revoking')`

// countHeldQuery counts a principal's unfinished leases, less the revoking
// ones whose access has ended (attempts and last error: see
// [LeaseStore.CountHeld]). Arguments: [principalArgs], attempts, the LIKE
// pattern.
func countHeldQuery(dialect string) string {
	return `SELECT COUNT(*) FROM sqlgate_lease WHERE ` + principalIs(dialect) + ` AND ` + unfinishedStates + `
		AND NOT (state = 'revoking' AND attempts >= ? AND last_error IS NOT NULL AND last_error LIKE ? ESCAPE '\')`
}

// unfinishedQuery lists a principal's unfinished leases. They are few and
// sorted after reading: with an ORDER BY, SQLite (no statistics) reads the
// principal's every lease through sqlgate_lease_principal_issued instead.
// Arguments: [principalArgs].
func unfinishedQuery(dialect string) string {
	return selectLease + ` WHERE ` + principalIs(dialect) + ` AND ` + unfinishedStates
}

// CountHeld implements [broker.LeaseStore].
func (s *LeaseStore) CountHeld(ctx context.Context, principalID string, stuckAttempts int, endedPrefix string) (int, error) {
	var n int
	args := append(principalArgs(s.db.dialect, principalID), stuckAttempts, likePrefix(endedPrefix))
	if err := s.db.db.QueryRowContext(ctx, s.db.q(countHeldQuery(s.db.dialect)), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count leases: %w", err)
	}
	return n, nil
}

// likePrefix is the LIKE pattern (escape character \) of the strings that
// start with prefix: its %, _ and \ (and [, special on SQL Server) match
// only themselves. (SQLite's LIKE, and SQL Server's under a
// case-insensitive collation, ignore case: the prefix is one sqlgate
// writes itself, never a value from outside.)
func likePrefix(prefix string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`, `[`, `\[`).Replace(prefix) + "%"
}

// UnfinishedByPrincipal implements [broker.LeaseStore].
func (s *LeaseStore) UnfinishedByPrincipal(ctx context.Context, principalID string) ([]broker.Lease, error) {
	rows, err := s.db.db.QueryContext(ctx, s.db.q(unfinishedQuery(s.db.dialect)), principalArgs(s.db.dialect, principalID)...)
	if err != nil {
		return nil, fmt.Errorf("list unfinished leases: %w", err)
	}
	out, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("list unfinished leases: %w", err)
	}
	out = leasesOf(out, principalID)
	slices.SortFunc(out, func(a, b broker.Lease) int { // newest first
		if c := b.IssuedAt.Compare(a.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// pruneFinalQuery deletes up to a number of leases that ended (revoked or
// failed) before a time, oldest first. Arguments: SQL Server (limit,
// before), the others (before, limit).
func pruneFinalQuery(dialect string) string {
	const where = `state IN ('revoked', 'failed') AND revoked_at < ?`
	if dialect == SQLServer {
		return `WITH old AS (SELECT TOP (?) * FROM sqlgate_lease WHERE ` + where + ` ORDER BY revoked_at) DELETE FROM old`
	}
	return `DELETE FROM sqlgate_lease WHERE id IN (SELECT id FROM sqlgate_lease WHERE ` + where + ` ORDER BY revoked_at LIMIT ?)`
}

// PruneFinal implements [broker.LeaseStore].
func (s *LeaseStore) PruneFinal(ctx context.Context, before time.Time, limit int) (int64, error) {
	args := []any{before.UnixNano(), limit}
	if s.db.dialect == SQLServer {
		args = []any{limit, before.UnixNano()}
	}
	res, err := s.db.db.ExecContext(ctx, s.db.q(pruneFinalQuery(s.db.dialect)), args...)
	if err != nil {
		return 0, fmt.Errorf("prune leases: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune leases: %w", err)
	}
	return n, nil
}

// leasePage is how a page of a principal's leases is read: see
// [pageQuery]. Live leases are those the web layer shows as active.
var leasePage = pageSpec{
	cols: strings.Join(leaseCols, ", "), table: "sqlgate_lease", key: "id",
	live:  `state = 'active' AND expires_at > ?`,
	ended: `(state <> 'active' OR expires_at <= ?)`,
}

// ByPrincipalPage implements [broker.LeaseStore].
func (s *LeaseStore) ByPrincipalPage(ctx context.Context, principalID string, page broker.ListPage) ([]broker.Lease, error) {
	if err := page.Check(); err != nil {
		return nil, err
	}
	query, args := pageQuery(s.db.dialect, leasePage, principalID, page)
	rows, err := s.db.db.QueryContext(ctx, s.db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return leasesOf(out, principalID), nil
}

// Activate implements [broker.LeaseStore].
func (s *LeaseStore) Activate(ctx context.Context, id, token string, now time.Time) (bool, error) {
	return s.update(ctx, "activate lease", `UPDATE sqlgate_lease
		SET state = 'active', claim_token = NULL, claim_owner = NULL, claim_until = NULL, updated_at = ?
		WHERE id = ? AND state = 'creating' AND claim_token = ?`, now.UnixNano(), s.db.key(id), s.db.key(token))
}

// Renew implements [broker.LeaseStore].
func (s *LeaseStore) Renew(ctx context.Context, id string, expiresAt, now time.Time) (bool, error) {
	return s.update(ctx, "renew lease", `UPDATE sqlgate_lease SET expires_at = ?, updated_at = ?
		WHERE id = ? AND state = 'active' AND expires_at > ? AND max_expires_at >= ?`,
		expiresAt.UnixNano(), now.UnixNano(), s.db.key(id), now.UnixNano(), expiresAt.UnixNano())
}

// MarkRevoking implements [broker.LeaseStore].
func (s *LeaseStore) MarkRevoking(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	return s.update(ctx, "mark lease revoking", `UPDATE sqlgate_lease
		SET state = 'revoking', reason = ?, next_attempt = ?, updated_at = ?
		WHERE id = ? AND state IN ('creating', 'active')`, reason, now.UnixNano(), now.UnixNano(), s.db.key(id))
}

// Claim implements [broker.LeaseStore].
func (s *LeaseStore) Claim(ctx context.Context, id string, c broker.Claim, now time.Time) (bool, error) {
	return s.update(ctx, "claim lease", `UPDATE sqlgate_lease
		SET claim_token = ?, claim_owner = ?, claim_until = ?, updated_at = ?
		WHERE id = ? AND state = 'revoking' AND (claim_until IS NULL OR claim_until <= ?)`,
		s.db.key(c.Token), c.Owner, c.Until.UnixNano(), now.UnixNano(), s.db.key(id), now.UnixNano())
}

// Finish implements [broker.LeaseStore].
func (s *LeaseStore) Finish(ctx context.Context, id, token string, state broker.LeaseState, now time.Time) (bool, error) {
	if !state.Final() {
		return false, fmt.Errorf("finish lease: %q is not a final state", state)
	}
	return s.update(ctx, "finish lease", `UPDATE sqlgate_lease
		SET state = ?, revoked_at = ?, last_error = NULL, claim_token = NULL, claim_owner = NULL, claim_until = NULL, updated_at = ?
		WHERE id = ? AND state IN ('creating', 'revoking') AND claim_token = ?`,
		string(state), now.UnixNano(), now.UnixNano(), s.db.key(id), s.db.key(token))
}

// RetryLater implements [broker.LeaseStore].
func (s *LeaseStore) RetryLater(ctx context.Context, id, token string, next time.Time, lastErr string, now time.Time) (bool, error) {
	return s.update(ctx, "reschedule lease revocation", `UPDATE sqlgate_lease
		SET state = 'revoking', attempts = attempts + 1, next_attempt = ?, last_error = ?,
		    claim_token = NULL, claim_owner = NULL, claim_until = NULL, updated_at = ?
		WHERE id = ? AND state IN ('creating', 'revoking') AND claim_token = ?`,
		next.UnixNano(), lastErr, now.UnixNano(), s.db.key(id), s.db.key(token))
}

// ReleaseClaims implements [broker.LeaseStore].
func (s *LeaseStore) ReleaseClaims(ctx context.Context, owner string) (int, error) {
	res, err := s.db.db.ExecContext(ctx, s.db.q(`UPDATE sqlgate_lease SET claim_until = 0
		WHERE claim_owner = ? AND claim_until IS NOT NULL`), owner)
	if err != nil {
		return 0, fmt.Errorf("release lease claims: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Unfinished implements [broker.LeaseStore].
func (s *LeaseStore) Unfinished(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.db.QueryContext(ctx, `SELECT database_name, COUNT(*) FROM sqlgate_lease
		WHERE state IN ('creating', 'active', 'revoking') GROUP BY database_name`)
	if err != nil {
		return nil, fmt.Errorf("count unfinished leases: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("count unfinished leases: %w", err)
		}
		out[name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count unfinished leases: %w", err)
	}
	return out, nil
}

func (s *LeaseStore) update(ctx context.Context, what, query string, args ...any) (bool, error) {
	res, err := s.db.db.ExecContext(ctx, s.db.q(query), args...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return n == 1, nil
}

// claimSpec is one reaper query: which rows (where, oldest first by order)
// and what to set on them.
type claimSpec struct{ set, where, order string }

// The reaper's queries. Each moves rows out of the set its where clause
// selects, so a row is returned to one caller only.
var (
	expireSpec = claimSpec{
		set:   `state = 'revoking', reason = 'expired', next_attempt = ?, updated_at = ?`,
		where: `state = 'active' AND expires_at <= ?`, order: "expires_at",
	}
	abandonSpec = claimSpec{
		set:   `state = 'revoking', reason = 'creation did not finish', next_attempt = ?, claim_token = NULL, claim_owner = NULL, claim_until = NULL, updated_at = ?`,
		where: `state = 'creating' AND claim_until <= ?`, order: "claim_until",
	}
	dueSpec = claimSpec{
		set:   `claim_token = ?, claim_owner = ?, claim_until = ?, updated_at = ?`,
		where: `state = 'revoking' AND next_attempt <= ? AND (claim_until IS NULL OR claim_until <= ?)`, order: "next_attempt",
	}
)

// ExpireDue implements [broker.LeaseStore].
func (s *LeaseStore) ExpireDue(ctx context.Context, now time.Time, limit int) ([]broker.Lease, error) {
	n := now.UnixNano()
	return s.claimRows(ctx, "expire leases", expireSpec, []any{n, n}, []any{n}, limit)
}

// AbandonStale implements [broker.LeaseStore].
func (s *LeaseStore) AbandonStale(ctx context.Context, now time.Time, limit int) ([]broker.Lease, error) {
	n := now.UnixNano()
	return s.claimRows(ctx, "abandon stale leases", abandonSpec, []any{n, n}, []any{n}, limit)
}

// ClaimDue implements [broker.LeaseStore].
func (s *LeaseStore) ClaimDue(ctx context.Context, c broker.Claim, now time.Time, limit int) ([]broker.Lease, error) {
	n := now.UnixNano()
	return s.claimRows(ctx, "claim due leases", dueSpec, []any{s.db.key(c.Token), c.Owner, c.Until.UnixNano(), n}, []any{n, n}, limit)
}

// claimQuery returns the statement that atomically selects up to limit rows
// matching where (oldest first by order), locks them against other
// instances and applies set, returning the updated rows. See claimRows for
// the order of the `?` placeholders per dialect.
func claimQuery(dialect string, q claimSpec) string {
	set, where, order := q.set, q.where, q.order
	cols := strings.Join(leaseCols, ", ")
	switch dialect {
	case SQLServer:
		out := make([]string, len(leaseCols))
		for i, c := range leaseCols {
			out[i] = "inserted." + c
		}
		return "WITH due AS (SELECT TOP (?) * FROM sqlgate_lease WITH (UPDLOCK, READPAST, ROWLOCK) WHERE " + where +
			" ORDER BY " + order + ") UPDATE due SET " + set + " OUTPUT " + strings.Join(out, ", ")
	case Postgres:
		return "UPDATE sqlgate_lease SET " + set + " WHERE id IN (SELECT id FROM sqlgate_lease WHERE " + where +
			" ORDER BY " + order + " LIMIT ? FOR UPDATE SKIP LOCKED) AND " + where + " RETURNING " + cols
	default:
		// SQLite: one writer at a time; the statement is atomic.
		return "UPDATE sqlgate_lease SET " + set + " WHERE id IN (SELECT id FROM sqlgate_lease WHERE " + where +
			" ORDER BY " + order + " LIMIT ?) RETURNING " + cols
	}
}

func (s *LeaseStore) claimRows(ctx context.Context, what string, spec claimSpec, setArgs, whereArgs []any, limit int) ([]broker.Lease, error) {
	if limit <= 0 {
		limit = 100
	}
	query := claimQuery(s.db.dialect, spec)
	var args []any
	switch s.db.dialect {
	case SQLServer:
		// WITH due AS (SELECT TOP (limit) ... WHERE where) UPDATE due SET set
		args = append(append(append(args, limit), whereArgs...), setArgs...)
	case Postgres:
		// UPDATE SET set WHERE id IN (... WHERE where LIMIT limit) AND where
		args = append(append(append(append(args, setArgs...), whereArgs...), limit), whereArgs...)
	default:
		args = append(append(append(args, setArgs...), whereArgs...), limit)
	}
	rows, err := s.db.db.QueryContext(ctx, s.db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func scanLeases(rows *sql.Rows) ([]broker.Lease, error) {
	defer rows.Close()
	var out []broker.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func scanLease(s scanner) (broker.Lease, error) {
	var (
		l                                          broker.Lease
		principal, state                           string
		issued, expires, maxExpires, next, updated int64
		revoked                                    sql.NullInt64
		reason, lastErr                            sql.NullString
	)
	if err := s.Scan(&l.ID, &principal, &l.Database, &l.Role, &l.Username, &state, &issued, &expires,
		&maxExpires, &revoked, &l.DecisionID, &reason, &l.Attempts, &next, &lastErr, &updated); err != nil {
		return l, err
	}
	if err := json.Unmarshal([]byte(principal), &l.Principal); err != nil {
		return l, fmt.Errorf("decode principal: %w", err)
	}
	l.State = broker.LeaseState(state)
	l.IssuedAt = time.Unix(0, issued).UTC()
	l.ExpiresAt = time.Unix(0, expires).UTC()
	l.MaxExpiry = time.Unix(0, maxExpires).UTC()
	l.NextAttempt = time.Unix(0, next).UTC()
	l.UpdatedAt = time.Unix(0, updated).UTC()
	if revoked.Valid {
		l.RevokedAt = time.Unix(0, revoked.Int64).UTC()
	}
	l.Reason, l.LastError = reason.String, lastErr.String
	return l, nil
}

var _ broker.LeaseStore = (*LeaseStore)(nil)
