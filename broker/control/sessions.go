package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// WebSession is a dashboard session as the control database keeps it: under
// the hex SHA-256 of its cookie, never the cookie itself.
type WebSession struct {
	Key       string
	Principal identity.Principal
	CSRF      string
	Expires   time.Time
}

// SessionStore keeps the dashboard's sessions in the control database
// (table sqlgate_web_session), so that every instance behind one address
// knows a session started on any of them, and a sign-out ends it on all.
type SessionStore struct {
	db *DB
}

// OpenSessionStore creates the session table and its indexes when missing
// and returns the store.
func OpenSessionStore(ctx context.Context, db *DB) (*SessionStore, error) {
	if err := db.createSchema(ctx, SessionSchema(db.dialect)); err != nil {
		return nil, fmt.Errorf("control database: create session table: %w", err)
	}
	return &SessionStore{db: db}, nil
}

// SessionSchema returns the DDL of the session table for a dialect
// (idempotent statements), for operators who create the schema themselves.
func SessionSchema(dialect string) []string {
	text, pid := "TEXT", "VARCHAR(512)"
	table := "CREATE TABLE IF NOT EXISTS sqlgate_web_session ("
	index := func(name, cols string) string {
		return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON sqlgate_web_session (%s)", name, cols)
	}
	if dialect == SQLServer {
		text, pid = "NVARCHAR(MAX)", sqlServerPrincipalID
		table = "IF OBJECT_ID(N'sqlgate_web_session', N'U') IS NULL CREATE TABLE sqlgate_web_session ("
		index = func(name, cols string) string { return sqlServerIndex(name, "sqlgate_web_session", cols) }
	}
	return []string{
		table + fmt.Sprintf(`
			session_key VARCHAR(64) NOT NULL PRIMARY KEY,
			principal_id %s NOT NULL,
			principal %s NOT NULL,
			csrf VARCHAR(64) NOT NULL,
			expires_at BIGINT NOT NULL)`, pid, text),
		index("sqlgate_web_session_expires", "expires_at"),
		index("sqlgate_web_session_principal", "principal_id"),
	}
}

// Put stores s and drops the sessions that expired before now.
func (s *SessionStore) Put(ctx context.Context, ws WebSession, now time.Time) error {
	principal, err := json.Marshal(ws.Principal)
	if err != nil {
		return fmt.Errorf("encode principal: %w", err)
	}
	if _, err := s.db.db.ExecContext(ctx, s.db.q(`DELETE FROM sqlgate_web_session WHERE expires_at <= ?`), now.UnixNano()); err != nil {
		return fmt.Errorf("drop expired sessions: %w", err)
	}
	_, err = s.db.db.ExecContext(ctx, s.db.q(`INSERT INTO sqlgate_web_session (session_key, principal_id, principal, csrf, expires_at) VALUES (?, ?, ?, ?, ?)`),
		s.db.key(ws.Key), ws.Principal.ID(), string(principal), ws.CSRF, ws.Expires.UnixNano())
	if err != nil {
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

// Get returns the session under key; found is false if there is none.
func (s *SessionStore) Get(ctx context.Context, key string) (ws WebSession, found bool, err error) {
	var (
		principal string
		expires   int64
	)
	err = s.db.db.QueryRowContext(ctx, s.db.q(`SELECT principal, csrf, expires_at FROM sqlgate_web_session WHERE session_key = ?`), s.db.key(key)).
		Scan(&principal, &ws.CSRF, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return WebSession{}, false, nil
	case err != nil:
		return WebSession{}, false, fmt.Errorf("read session: %w", err)
	}
	if err := json.Unmarshal([]byte(principal), &ws.Principal); err != nil {
		return WebSession{}, false, fmt.Errorf("decode session principal: %w", err)
	}
	ws.Key, ws.Expires = key, time.Unix(0, expires)
	return ws, true, nil
}

// Delete removes the session under key, if there is one.
func (s *SessionStore) Delete(ctx context.Context, key string) error {
	if _, err := s.db.db.ExecContext(ctx, s.db.q(`DELETE FROM sqlgate_web_session WHERE session_key = ?`), s.db.key(key)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeletePrincipal ends every session of a principal (offboarding) and
// returns how many there were.
func (s *SessionStore) DeletePrincipal(ctx context.Context, principalID string) (int64, error) {
	res, err := s.db.db.ExecContext(ctx, s.db.q(`DELETE FROM sqlgate_web_session WHERE `+principalIs(s.db.dialect)), principalArgs(s.db.dialect, principalID)...)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	return res.RowsAffected()
}
