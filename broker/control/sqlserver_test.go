package control

import (
	"database/sql/driver"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/internal/schemalock"
)

// sqlServerStep is one store operation of sqlServerScenario and what it
// sent.
type sqlServerStep struct {
	what string
	sent []sentStmt
}

// sqlServerScenario runs every control-database operation that takes a
// key, and the schema creation, in the SQL Server dialect against a
// recorder, and returns what each sent.
func sqlServerScenario(t *testing.T) []sqlServerStep {
	t.Helper()
	rec := &recorder{}
	ctx := t.Context()
	var steps []sqlServerStep
	step := func(what string, f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		steps = append(steps, sqlServerStep{what, rec.take()})
	}
	var (
		c        *DB
		leases   *LeaseStore
		sessions *SessionStore
		cutoffs  *SignInCutoffs
	)
	step("control.Open", func() (err error) { c, err = Open(ctx, rec.openDB(), SQLServer); return err })
	step("OpenLeaseStore", func() (err error) { leases, err = OpenLeaseStore(ctx, c); return err })
	step("OpenSessionStore", func() (err error) { sessions, err = OpenSessionStore(ctx, c); return err })
	step("OpenSignInCutoffs", func() (err error) { cutoffs, err = OpenSignInCutoffs(ctx, c); return err })

	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice"}
	reg := NewRegistry(c, time.Nanosecond, func() time.Time { return now })
	iss := broker.Issuance{
		UserKey: "UKEY", Principal: alice, SigningKey: "ASIGNING", Account: "AUSERS", Via: "creds",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), DecisionID: "d1", Pub: []string{"orders.v1.get"},
	}
	step("Registry.PutIssuance, a new key", func() error { _, err := reg.PutIssuance(ctx, iss); return err })
	rec.rows = func(q string) ([]string, [][]driver.Value) {
		if strings.HasPrefix(q, "SELECT principal_id, revoked_at, expires_at, pub FROM sqlgate_issuance") {
			return []string{"principal_id", "revoked_at", "expires_at", "pub"},
				[][]driver.Value{{alice.ID(), nil, now.Add(time.Minute).UnixNano(), `["orders.v1.get"]`}}
		}
		if strings.HasPrefix(q, "SELECT COUNT(*)") {
			return []string{"n"}, [][]driver.Value{{int64(0)}}
		}
		return nil, nil
	}
	step("Registry.PutIssuance, a key issued before", func() error { _, err := reg.PutIssuance(ctx, iss); return err })
	step("Registry.Lookup", func() error {
		if _, err := reg.Lookup(ctx, "UKEY"); !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		return nil
	})
	step("Registry.Revoke", func() error { return reg.Revoke(ctx, "UKEY", now) })
	step("Registry.Withdraw", func() error { return reg.Withdraw(ctx, "UKEY", "d1") })
	rec.affected = func(q string) int64 {
		if strings.HasPrefix(q, "UPDATE sqlgate_callout_token SET token_hash") {
			return 0 // a new key: BindCalloutToken inserts
		}
		return 1
	}
	step("Registry.BindCalloutToken, a new key", func() error {
		return reg.BindCalloutToken(ctx, "UKEY", "TOKENHASH", now.Add(time.Hour), now.Add(time.Hour))
	})
	rec.affected = nil
	step("Registry.RefuseCalloutTokens", func() error { return reg.RefuseCalloutTokens(ctx, []string{"UKEY"}, now) })
	step("Registry.CalloutTokenRefused", func() error { _, err := reg.CalloutTokenRefused(ctx, "TOKENHASH"); return err })

	ws := WebSession{Key: "SESSIONKEY", Principal: alice, CSRF: "csrf", Expires: now.Add(time.Hour)}
	step("SessionStore.Put", func() error { return sessions.Put(ctx, ws, now) })
	step("SessionStore.Get", func() error { _, _, err := sessions.Get(ctx, "SESSIONKEY"); return err })
	step("SessionStore.Delete", func() error { return sessions.Delete(ctx, "SESSIONKEY") })

	l := &broker.Lease{
		ID: "LEASEID", Principal: alice, Database: "orders", Role: "reader", Username: "sg_x",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), MaxExpiry: now.Add(4 * time.Hour), DecisionID: "d2",
	}
	cl := broker.Claim{Token: "CLAIMTOKEN", Owner: "instance-1", Until: now.Add(time.Minute)}
	step("LeaseStore.Create", func() error { return leases.Create(ctx, l, cl) })
	step("LeaseStore.Get", func() error {
		if _, err := leases.Get(ctx, "LEASEID"); !errors.Is(err, broker.ErrNotFound) {
			return err
		}
		return nil
	})
	step("LeaseStore.Activate", func() error { _, err := leases.Activate(ctx, "LEASEID", "CLAIMTOKEN", now); return err })
	step("LeaseStore.Renew", func() error { _, err := leases.Renew(ctx, "LEASEID", now.Add(time.Hour), now); return err })
	step("LeaseStore.MarkRevoking", func() error { _, err := leases.MarkRevoking(ctx, "LEASEID", "revoked", now); return err })
	step("LeaseStore.Claim", func() error { _, err := leases.Claim(ctx, "LEASEID", cl, now); return err })
	step("LeaseStore.Finish", func() error {
		_, err := leases.Finish(ctx, "LEASEID", "CLAIMTOKEN", broker.LeaseRevoked, now)
		return err
	})
	step("LeaseStore.RetryLater", func() error {
		_, err := leases.RetryLater(ctx, "LEASEID", "CLAIMTOKEN", now.Add(time.Minute), "unreachable", now)
		return err
	})
	step("LeaseStore.ClaimDue", func() error { _, err := leases.ClaimDue(ctx, cl, now, 10); return err })
	step("LeaseStore.CountHeld", func() error {
		_, err := leases.CountHeld(ctx, alice.ID(), broker.StuckAttempts, "login disabled, sessions ended; removal failed: ")
		return err
	})
	step("LeaseStore.UnfinishedByPrincipal", func() error { _, err := leases.UnfinishedByPrincipal(ctx, alice.ID()); return err })
	step("LeaseStore.PruneFinal", func() error {
		_, err := leases.PruneFinal(ctx, now.Add(-30*24*time.Hour), broker.PruneBatch)
		return err
	})
	step("SignInCutoffs.SetCutoff", func() error { return cutoffs.SetCutoff(ctx, alice.ID(), now) })
	step("SignInCutoffs.Cutoff", func() error { _, err := cutoffs.Cutoff(ctx, alice.ID()); return err })
	step("SessionStore.DeletePrincipal", func() error { _, err := sessions.DeletePrincipal(ctx, alice.ID()); return err })
	step("LeaseStore.ByPrincipal", func() error { _, err := leases.ByPrincipal(ctx, alice.ID()); return err })
	step("LeaseStore.ByPrincipalPage", func() error {
		_, err := leases.ByPrincipalPage(ctx, alice.ID(), broker.ListPage{Limit: 10, Filter: broker.ListAll})
		return err
	})
	step("Registry.ByPrincipal", func() error { _, err := reg.ByPrincipal(ctx, alice.ID()); return err })
	step("Registry.CountLive", func() error { _, err := reg.CountLive(ctx, alice.ID(), now); return err })
	step("Registry.ByPrincipalPage", func() error {
		_, err := reg.ByPrincipalPage(ctx, alice.ID(), broker.ListPage{Limit: 10, Filter: broker.ListLive, At: now})
		return err
	})
	return steps
}

// principalCompare finds a comparison of principal_id with a parameter,
// and the exact (varbinary) comparison that must follow it.
var (
	principalCompare = regexp.MustCompile(`principal_id = @p(\d+)( AND CAST\(principal_id AS varbinary\(max\)\) = CAST\(@p(\d+) AS varbinary\(max\)\))?`)
)

// TestSQLServerPrincipalComparedExactly checks that every SQL Server
// statement that compares principal_id with a parameter also compares the
// two as varbinary (exact whatever the column's collation, case and
// trailing spaces included), passing the principal id twice as nvarchar:
// a table created before principal_id was declared COLLATE
// Latin1_General_100_BIN2 compares under the database's collation, usually
// case-insensitive, and one principal's revoke-all would reach another's
// rows. New tables declare the collation.
func TestSQLServerPrincipalComparedExactly(t *testing.T) {
	checked := 0
	for _, s := range sqlServerScenario(t) {
		for _, st := range s.sent {
			if st.tx != "" {
				continue
			}
			if strings.Contains(st.query, "principal_id NVARCHAR") && !strings.Contains(st.query, "principal_id NVARCHAR(450) COLLATE Latin1_General_100_BIN2 NOT NULL") {
				t.Errorf("%s: a principal_id column without COLLATE Latin1_General_100_BIN2: %s", s.what, st.query)
			}
			for _, m := range principalCompare.FindAllStringSubmatch(st.query, -1) {
				checked++
				if m[2] == "" {
					t.Errorf("%s: principal_id compared under the column's collation only:\n%s", s.what, st.query)
					continue
				}
				a, _ := strconv.Atoi(m[1])
				b, _ := strconv.Atoi(m[3])
				va, oka := st.args[a-1].Value.(string)
				vb, okb := st.args[b-1].Value.(string)
				if !oka || !okb || va != vb {
					t.Errorf("%s: @p%d and @p%d are %s %q and %s %q, want the same principal id twice as nvarchar", s.what, a, b,
						sqlServerType(st.args[a-1].Value), st.args[a-1].Value, sqlServerType(st.args[b-1].Value), st.args[b-1].Value)
				}
			}
		}
	}
	if checked < 9 {
		t.Errorf("checked %d principal_id comparisons; the scenario lost its statements?", checked)
	}
}

// TestSQLServerStatementsGolden shows what the control database receives
// on SQL Server for each operation that takes a key, with the type each
// parameter is declared with, and how the schema is created, so that a
// DBA can review them (SQL Server cannot run in CI).
func TestSQLServerStatementsGolden(t *testing.T) {
	var b strings.Builder
	b.WriteString("-- control database on sqlserver: what each operation sends, with the parameters' declared types\n")
	b.WriteString("-- (generated by TestSQLServerStatementsGolden; go test -update)\n")
	for _, s := range sqlServerScenario(t) {
		b.WriteString("\n-- " + s.what + "\n")
		for _, st := range s.sent {
			b.WriteString(st.render())
		}
	}
	compareGolden(t, filepath.Join("testdata", "statements_sqlserver.golden"), b.String())
}

// keyColumns are the control database's VARCHAR columns that statements
// compare with, or set from, a parameter.
var keyColumns = map[string]bool{"user_key": true, "token_hash": true, "session_key": true, "id": true, "claim_token": true, "decision_id": true}

var (
	keyCompare = regexp.MustCompile(`(?:^|[^\w.])(\w+) (?:=|<>|<|>|<=|>=) @p(\d+)\b`)
	insertCols = regexp.MustCompile(`(?s)^INSERT INTO \w+\s*\(([^)]*)\)\s*VALUES \(([^)]*)\)`)
)

// TestSQLServerKeysAreVarchar checks that every key value a SQL Server
// statement compares with, sets or inserts into a VARCHAR key column is
// sent as varchar: an nvarchar parameter makes SQL Server convert the
// column, which under a SQL collation turns each index seek into a scan.
func TestSQLServerKeysAreVarchar(t *testing.T) {
	checked := 0
	for _, s := range sqlServerScenario(t) {
		for _, st := range s.sent {
			if st.tx != "" {
				continue
			}
			pos := map[int]string{} // parameter ordinal -> column
			for _, m := range keyCompare.FindAllStringSubmatch(st.query, -1) {
				n, _ := strconv.Atoi(m[2])
				pos[n] = m[1]
			}
			if m := insertCols.FindStringSubmatch(st.query); m != nil {
				cols, vals := strings.Split(m[1], ","), strings.Split(m[2], ",")
				if len(cols) != len(vals) {
					t.Fatalf("%s: %d columns, %d values in %s", s.what, len(cols), len(vals), st.query)
				}
				for i, v := range vals {
					if n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(v), "@p")); err == nil {
						pos[n] = strings.TrimSpace(cols[i])
					}
				}
			}
			for n, col := range pos {
				if !keyColumns[col] {
					continue
				}
				checked++
				if n > len(st.args) {
					t.Fatalf("%s: @p%d of %d parameters", s.what, n, len(st.args))
				}
				if _, ok := st.args[n-1].Value.(mssql.VarChar); !ok {
					t.Errorf("%s: %s takes @p%d as %s, want varchar:\n%s", s.what, col, n, sqlServerType(st.args[n-1].Value), st.query)
				}
			}
		}
	}
	if checked < 30 {
		t.Errorf("checked %d key parameters; the scenario lost its statements?", checked)
	}
}

// TestSQLServerSchemaUnderLock checks that on SQL Server every statement
// that creates a table or an index runs in a transaction whose first
// statement takes the schema lock, so instances starting together on an
// empty database do not both create a table.
func TestSQLServerSchemaUnderLock(t *testing.T) {
	ddl := 0
	for _, s := range sqlServerScenario(t) {
		locked := false
		for _, st := range s.sent {
			switch {
			case st.tx != "": // a transaction begins or ends
				locked = false
			case st.query == schemalock.SQLServer:
				locked = true
			case strings.Contains(st.query, "CREATE TABLE") || strings.Contains(st.query, "CREATE INDEX"):
				ddl++
				if !locked {
					t.Errorf("%s: DDL outside the schema lock: %s", s.what, st.query)
				}
			}
		}
	}
	if ddl < 10 {
		t.Errorf("saw %d DDL statements; the scenario lost its schema steps?", ddl)
	}
}

// TestSQLServerSchemaLockRefused checks that Open fails, and creates
// nothing, when the schema lock is not granted.
func TestSQLServerSchemaLockRefused(t *testing.T) {
	rec := &recorder{fail: func(q string) error {
		if q == schemalock.SQLServer {
			return mssql.Error{Number: 51000, Message: "sqlgate: the schema lock sqlgate-schema was not granted (sp_getapplock returned -1)"}
		}
		return nil
	}}
	if _, err := Open(t.Context(), rec.openDB(), SQLServer); err == nil || !strings.Contains(err.Error(), "not granted") {
		t.Fatalf("Open = %v, want the lock's error", err)
	}
	for _, st := range rec.take() {
		if strings.Contains(st.query, "CREATE") {
			t.Errorf("sent DDL without the lock: %s", st.query)
		}
		if st.tx == txCommit {
			t.Error("committed without the lock")
		}
	}
}

// TestPutIssuanceRetriesDeadlockVictim checks that a Put that SQL Server
// rolled back as a deadlock victim (error 1205) runs again, and that other
// errors are not retried.
func TestPutIssuanceRetriesDeadlockVictim(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	iss := broker.Issuance{
		UserKey: "UKEY", Principal: identity.Principal{Issuer: "https://idp", Subject: "alice"}, SigningKey: "A", Account: "A",
		Via: "creds", IssuedAt: now, ExpiresAt: now.Add(time.Hour), DecisionID: "d1", Pub: []string{},
	}
	for _, tc := range []struct {
		number                  int32
		wantErr                 bool
		wantBegins, wantCommits int
	}{
		{1205, false, 2, 1}, // deadlock victim: run again
		{547, true, 1, 0},   // a constraint: not retried
	} {
		t.Run(strconv.Itoa(int(tc.number)), func(t *testing.T) {
			failed := false
			rec := &recorder{fail: func(q string) error {
				if strings.HasPrefix(q, "UPDATE sqlgate_issuance SET expires_at = expires_at") && !failed {
					failed = true
					return mssql.Error{Number: tc.number, Message: "injected"}
				}
				return nil
			}}
			c := &DB{db: rec.openDB(), dialect: SQLServer}
			_, err := NewRegistry(c, 0, nil).PutIssuance(t.Context(), iss)
			if (err != nil) != tc.wantErr {
				t.Fatalf("PutIssuance = %v, want error %v", err, tc.wantErr)
			}
			begins, commits := 0, 0
			for _, st := range rec.take() {
				switch st.tx {
				case txBegin:
					begins++
				case txCommit:
					commits++
				}
			}
			if begins != tc.wantBegins || commits != tc.wantCommits {
				t.Errorf("%d transactions begun, %d committed; want %d, %d", begins, commits, tc.wantBegins, tc.wantCommits)
			}
		})
	}
}

// TestSQLServerCutoffCollision: on a sign-in cutoff table created before
// principal_id was declared COLLATE Latin1_General_100_BIN2, the primary
// key takes two ids that differ only in case for one: the exact update
// finds no row, the insert collides, and SetCutoff fails with an error that
// says why and where the fix is, instead of touching the other principal's
// cutoff.
func TestSQLServerCutoffCollision(t *testing.T) {
	rec := &recorder{
		affected: func(q string) int64 {
			if strings.HasPrefix(q, "UPDATE sqlgate_signin_cutoff") {
				return 0
			}
			return 1
		},
		fail: func(q string) error {
			if strings.HasPrefix(q, "INSERT INTO sqlgate_signin_cutoff") {
				return mssql.Error{Number: 2627, Message: "Violation of PRIMARY KEY constraint 'PK__sqlgate___x'. Cannot insert duplicate key in object 'dbo.sqlgate_signin_cutoff'."}
			}
			return nil
		},
	}
	c := &DB{db: rec.openDB(), dialect: SQLServer}
	err := (&SignInCutoffs{db: c}).SetCutoff(t.Context(), "https://idp.example 00uabc", time.Now())
	if err == nil || !strings.Contains(err.Error(), "Latin1_General_100_BIN2") || !strings.Contains(err.Error(), "docs/sqlserver.md") {
		t.Errorf("SetCutoff colliding under the column's collation = %v, want an error naming the collation and docs/sqlserver.md", err)
	}
	for _, st := range rec.take() {
		if strings.HasPrefix(st.query, "UPDATE sqlgate_signin_cutoff") && !principalCompare.MatchString(st.query) {
			t.Errorf("the cutoff update does not select the principal exactly: %s", st.query)
		}
	}
}
