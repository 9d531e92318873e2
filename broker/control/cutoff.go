package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sqlgate/sqlgate/broker"
)

// SignInCutoffs keeps, per principal, the instant of its last offboarding
// (table sqlgate_signin_cutoff): sign-ins at or before it get no new
// credentials. It implements [broker.SignInCutoffs]; every read goes to the
// database, so a revoke-all on one instance holds on all at once. Times
// are stored as Unix nanoseconds.
type SignInCutoffs struct {
	db *DB
}

var _ broker.SignInCutoffs = (*SignInCutoffs)(nil)

// OpenSignInCutoffs creates the cutoff table when missing and returns the
// store.
func OpenSignInCutoffs(ctx context.Context, db *DB) (*SignInCutoffs, error) {
	if err := db.createSchema(ctx, CutoffSchema(db.dialect)); err != nil {
		return nil, fmt.Errorf("control database: create sign-in cutoff table: %w", err)
	}
	return &SignInCutoffs{db: db}, nil
}

// CutoffSchema returns the DDL of the sign-in cutoff table for a dialect
// (idempotent statements), for operators who create the schema themselves.
func CutoffSchema(dialect string) []string {
	pid := "VARCHAR(512)"
	if dialect == SQLServer {
		pid = sqlServerPrincipalID
	}
	body := fmt.Sprintf(`
			principal_id %s NOT NULL PRIMARY KEY,
			revoked_before BIGINT NOT NULL,
			updated_at BIGINT NOT NULL`, pid)
	if dialect == SQLServer {
		return []string{"IF OBJECT_ID(N'sqlgate_signin_cutoff', N'U') IS NULL CREATE TABLE sqlgate_signin_cutoff (" + body + ")"}
	}
	return []string{"CREATE TABLE IF NOT EXISTS sqlgate_signin_cutoff (" + body + ")"}
}

// SetCutoff records t as the principal's cutoff unless a later one is
// recorded already.
func (c *SignInCutoffs) SetCutoff(ctx context.Context, principalID string, t time.Time) error {
	now := time.Now().UnixNano()
	for attempt := 0; ; attempt++ {
		args := append([]any{t.UnixNano(), t.UnixNano(), now}, principalArgs(c.db.dialect, principalID)...)
		res, err := c.db.db.ExecContext(ctx, c.db.q(`UPDATE sqlgate_signin_cutoff
			SET revoked_before = CASE WHEN revoked_before < ? THEN ? ELSE revoked_before END, updated_at = ?
			WHERE `+principalIs(c.db.dialect)), args...)
		if err != nil {
			return fmt.Errorf("set sign-in cutoff: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("set sign-in cutoff: %w", err)
		} else if n > 0 {
			return nil
		}
		_, err = c.db.db.ExecContext(ctx, c.db.q(`INSERT INTO sqlgate_signin_cutoff (principal_id, revoked_before, updated_at) VALUES (?, ?, ?)`),
			principalID, t.UnixNano(), now)
		if err == nil {
			return nil
		}
		// Another instance inserted the row first (primary key): update it.
		if attempt > 0 {
			if c.db.uniqueViolation(err) {
				// The exact update found no row twice, and the primary key
				// refused the insert twice: a table created before
				// principal_id was declared COLLATE Latin1_General_100_BIN2
				// holds another principal whose id differs only in case.
				return fmt.Errorf("set sign-in cutoff: the principal's id equals another principal's under the collation of sqlgate_signin_cutoff.principal_id (a table created before sqlgate declared it COLLATE Latin1_General_100_BIN2): recreate the table as docs/sqlserver.md says (control database, principal ids): %w", err)
			}
			return fmt.Errorf("set sign-in cutoff: %w", err)
		}
	}
}

// Cutoff returns the principal's cutoff, the zero time when it has none.
func (c *SignInCutoffs) Cutoff(ctx context.Context, principalID string) (time.Time, error) {
	var (
		id string
		ns int64
	)
	err := c.db.db.QueryRowContext(ctx, c.db.q(`SELECT principal_id, revoked_before FROM sqlgate_signin_cutoff WHERE `+principalIs(c.db.dialect)),
		principalArgs(c.db.dialect, principalID)...).Scan(&id, &ns)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("read sign-in cutoff: %w", err)
	case id != principalID: // another principal's (the statement selects exactly; this holds whatever the collation)
		return time.Time{}, nil
	}
	return time.Unix(0, ns).UTC(), nil
}
