package control

import (
	"database/sql/driver"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/internal/schemalock"
)

// TestPostgresSchemaUnderLock checks that on PostgreSQL every store that
// creates tables sends its DDL in one transaction whose first statement
// takes the schema lock, and nothing else in it: instances starting
// together on an empty database then create each table once
// (TestPostgresSchemaConcurrentOpen runs that against a live server).
func TestPostgresSchemaUnderLock(t *testing.T) {
	rec := &recorder{rows: regclass(false)}
	ctx := t.Context()
	c, err := Open(ctx, rec.openDB(), Postgres)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	// then is true for a step that sends statements of its own after the
	// schema's transaction: only what it sends up to that commit is checked.
	steps := []struct {
		what string
		run  func() error
		ddl  []string
		then bool
	}{
		{"control.Open", func() error { return nil }, c.schema(), false},
		{"OpenLeaseStore", func() error { _, err := OpenLeaseStore(ctx, c); return err }, LeaseSchema(Postgres), false},
		{"OpenSessionStore", func() error { _, err := OpenSessionStore(ctx, c); return err }, SessionSchema(Postgres), false},
		{"OpenSignInCutoffs", func() error { _, err := OpenSignInCutoffs(ctx, c); return err }, CutoffSchema(Postgres), false},
		{"Registry.BindCalloutToken, the registry's first use", func() error {
			return NewRegistry(c, time.Hour, nil).BindCalloutToken(ctx, "UKEY", "TOKENHASH", now, now)
		}, CalloutTokenSchema(Postgres), true},
	}
	for i, s := range steps {
		if i > 0 {
			if err := s.run(); err != nil {
				t.Fatalf("%s: %v", s.what, err)
			}
		}
		want := append(append([]string{txBegin, schemalock.Postgres}, s.ddl...), txCommit)
		var got []string
		for _, st := range rec.take() {
			if st.query == postgresRegclass {
				continue // TestPostgresSchemaSkipsExisting
			}
			if st.tx != "" {
				got = append(got, st.tx)
			} else {
				got = append(got, st.query)
			}
		}
		if i := slices.Index(got, txCommit); s.then && i >= 0 {
			got = got[:i+1]
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s sent:\n%s\nwant:\n%s", s.what, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestPostgresSchemaLockRefused checks that Open fails, and creates
// nothing, when the schema lock is not taken (its wait cancelled, or a
// lock_timeout).
func TestPostgresSchemaLockRefused(t *testing.T) {
	rec := &recorder{rows: regclass(false), fail: func(q string) error {
		if q == schemalock.Postgres {
			return errors.New("ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)")
		}
		return nil
	}}
	if _, err := Open(t.Context(), rec.openDB(), Postgres); err == nil || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("Open = %v, want the lock's error", err)
	}
	got := slices.DeleteFunc(rec.take(), func(s sentStmt) bool { return s.query == postgresRegclass })
	if len(got) != 3 || got[0].tx != txBegin || got[1].query != schemalock.Postgres || got[2].tx != txRollback {
		t.Errorf("Open sent %+v, want begin, the lock, rollback", got)
	}
}

const postgresRegclass = "SELECT to_regclass($1) IS NOT NULL"

// regclass answers every to_regclass query with exists.
func regclass(exists bool) func(string) ([]string, [][]driver.Value) {
	return func(q string) ([]string, [][]driver.Value) {
		if q != postgresRegclass {
			return nil, nil
		}
		return []string{"exists"}, [][]driver.Value{{exists}}
	}
}

// TestPostgresSchemaSkipsExisting: on a database whose tables and indexes
// exist, opening the stores sends no transaction and no DDL, only the
// existence checks. `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on its
// table even when the index exists, which the schema transaction would
// hold to its end: every start of a replica would stall, or deadlock with,
// the running replicas' writes (TestPostgresSchemaStartDoesNotBlockWriters
// runs that against a live server).
func TestPostgresSchemaSkipsExisting(t *testing.T) {
	rec := &recorder{rows: regclass(true)}
	ctx := t.Context()
	c, err := Open(ctx, rec.openDB(), Postgres)
	if err != nil {
		t.Fatal(err)
	}
	for _, open := range []func() error{
		func() error { _, err := OpenLeaseStore(ctx, c); return err },
		func() error { _, err := OpenSessionStore(ctx, c); return err },
		func() error { _, err := OpenSignInCutoffs(ctx, c); return err },
	} {
		if err := open(); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range rec.take() {
		if st.query != postgresRegclass {
			t.Errorf("sent %q %q on a database whose schema exists; want only existence checks", st.tx, st.query)
		}
	}
}
