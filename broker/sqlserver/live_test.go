package sqlserver

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

const envDSN = "SQLGATE_TEST_SQLSERVER_DSN"

// liveDSN is the connection string of the throwaway database created for
// this run ("" when SQLGATE_TEST_SQLSERVER_DSN is unset).
var liveDSN string

// liveInsecure is set when liveDSN does not pass CheckTransport (a test
// server with a self-signed certificate and TrustServerCertificate=true):
// the live tests use the server they are given, as allowInsecureTransport.
var liveInsecure bool

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	admin := os.Getenv(envDSN)
	if admin == "" {
		return m.Run()
	}
	ctx := context.Background()
	conn, err := mssql.NewConnector(admin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid connection string\n", envDSN)
		return 1
	}
	db := sql.OpenDB(conn)
	defer func() { _ = db.Close() }()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sqlgate_test_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		fmt.Fprintf(os.Stderr, "create test database: %v\n", err)
		return 1
	}
	defer func() {
		_, err := db.ExecContext(ctx, "ALTER DATABASE "+name+" SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE "+name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "drop test database %s: %v\n", name, err)
		}
	}()
	liveDSN, err = withParams(admin, map[string]string{"database": name})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := CheckTransport(liveDSN, false); err != nil {
		liveInsecure = true
		fmt.Fprintf(os.Stderr, "%s: %v; the live tests run with allowInsecureTransport\n", envDSN, err)
	}
	tdb, err := sql.Open("sqlserver", liveDSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ddl, err := os.ReadFile(filepath.Join("testdata", "orders.sql"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	batches := append([]string{IdempotencyDDL}, regexp.MustCompile(`(?m)^GO\s*$`).Split(string(ddl), -1)...)
	for _, batch := range batches {
		if _, err := tdb.ExecContext(ctx, batch); err != nil {
			fmt.Fprintf(os.Stderr, "create test schema: %v\n", err)
			_ = tdb.Close()
			return 1
		}
	}
	_ = tdb.Close()
	return m.Run()
}

func openLive(t *testing.T) *Executor {
	t.Helper()
	if liveDSN == "" {
		t.Skip(envDSN + " is not set: SQL Server live tests skipped (set it to a server where the login may create databases)")
	}
	e, err := Open(t.Context(), Config{Name: "test", DSN: liveDSN, MaxConns: 2, AllowInsecureTransport: liveInsecure})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if _, err := e.DB().ExecContext(t.Context(), `DELETE FROM sqlgate.idempotency; DELETE FROM dbo.orders;`); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestLiveConformance(t *testing.T) {
	if liveDSN == "" {
		t.Skip(envDSN + " is not set: SQL Server live tests skipped (set it to a server where the login may create databases)")
	}
	brokertest.RunExecutorTests(t, func(t *testing.T) *brokertest.Harness {
		e := openLive(t)
		return &brokertest.Harness{
			Executor: e, Targets: targets, Down: func() { _ = e.Close() },
			SessionOutside: func(ctx context.Context) (string, bool, error) {
				var v sql.NullString
				err := e.DB().QueryRowContext(ctx, `SELECT CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256))`).Scan(&v)
				return v.String, v.Valid, err
			},
		}
	})
}

// The procedure's OUTPUT parameter and return status reach the result.
func TestLiveProcedureOutput(t *testing.T) {
	e := openLive(t)
	cat, err := brokertest.Catalog("test", targets)
	if err != nil {
		t.Fatal(err)
	}
	create, _ := cat.Lookup(brokertest.SubjectCreate)
	c, _ := brokertest.NewCall(create, `{"customer":"x","amount":1,"quantity":1,"express":true}`, "")
	res, err := e.Execute(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := brokertest.DecodeResult(res.JSON)
	if err != nil || len(d.Rows) != 1 || d.ReturnValue == nil {
		t.Fatalf("create = %s (%v), want one row and a return_value", res.JSON, err)
	}
	cancel, _ := cat.Lookup(brokertest.SubjectCancel)
	c, _ = brokertest.NewCall(cancel, fmt.Sprintf(`{"id":%s}`, d.Rows[0]["id"]), "")
	res, err = e.Execute(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	d, err = brokertest.DecodeResult(res.JSON)
	// rows_affected counts the UPDATE: the procedure's SELECT @previous_status
	// = status sets @@ROWCOUNT but sends no row count (SQL Server returns
	// counts for DML and for SELECTs that send rows, not for assignments).
	if err != nil || d.Output["previous_status"] != "open" || d.ReturnValue.String() != "0" || d.RowsAffected.String() != "1" {
		t.Errorf("cancel = %s (%v), want output previous_status open, return_value 0, rows_affected 1", res.JSON, err)
	}
}

// A call in flight locks its own idempotency key only: a call with another
// key runs meanwhile. (The NOT EXISTS check under UPDLOCK, HOLDLOCK that
// the record used to be inserted with held a key-range lock on the next
// key, or the end of the index, for the whole call, so here the second
// call would have waited until the first ended.)
func TestLiveKeysDoNotWaitForEachOther(t *testing.T) {
	e := openLive(t)
	cat, err := brokertest.Catalog("test", targets)
	if err != nil {
		t.Fatal(err)
	}
	slow, _ := cat.Lookup(brokertest.SubjectSlowCreate)
	session, _ := cat.Lookup(brokertest.SubjectSession) // reads no table
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	slowDone := make(chan error, 1)
	sc, err := brokertest.NewCall(slow, `{"customer":"slow","seconds":60}`, "key-slow")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := e.Execute(ctx, sc)
		slowDone <- err
	}()
	// Wait until the slow call has inserted its (uncommitted) record.
	for {
		var n int
		if err := e.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sqlgate.idempotency WITH (READUNCOMMITTED) WHERE idempotency_key = N'key-slow'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		select {
		case err := <-slowDone:
			t.Fatalf("the slow call ended (%v) before its record was seen", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	c, err := brokertest.NewCall(session, `{}`, "key-other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Execute(t.Context(), c); err != nil {
		t.Fatalf("call with another key while the slow call runs: %v", err)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the call with another key returned only after the slow call ended (%v): it waited on the slow call's locks", err)
	default:
	}
	cancel()
	<-slowDone
}

// A routed procedure that commits the call's transaction: its work and the
// idempotency record are committed, so the call is not reported as a
// DBError (a rollback) but as ErrCommittedWithoutResult, Lookup finds the
// record without a result, and a retry replays it without running the
// procedure again. The same when the procedure raises an error after its
// COMMIT.
func TestLiveProcedureCommits(t *testing.T) {
	e := openLive(t)
	cat, err := route.New([]route.Spec{
		{Subject: "t.commit", Database: "test", Procedure: "dbo.orders_commit", Params: map[string]any{"type": "object", "properties": map[string]any{"customer": map[string]any{"type": "string"}}}},
		{Subject: "t.commit_throw", Database: "test", Procedure: "dbo.orders_commit_throw", Params: map[string]any{"type": "object", "properties": map[string]any{"customer": map[string]any{"type": "string"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"t.commit", "t.commit_throw"} {
		t.Run(subject, func(t *testing.T) {
			r, _ := cat.Lookup(subject)
			customer := "committed-by-" + subject
			c, err := brokertest.NewCall(r, fmt.Sprintf(`{"customer":%q}`, customer), "key-"+subject)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Execute(t.Context(), c)
			var dbe *broker.DBError
			if errors.As(err, &dbe) || !errors.Is(err, ErrCommittedWithoutResult) || !errors.Is(err, broker.ErrUnavailable) {
				t.Fatalf("Execute = %v, want ErrUnavailable with ErrCommittedWithoutResult, not a DBError", err)
			}
			var n int
			if err := e.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM dbo.orders WHERE customer = @p1`, customer).Scan(&n); err != nil || n != 1 {
				t.Fatalf("rows the procedure committed = %d, %v; want 1", n, err)
			}
			res, found, err := e.Lookup(t.Context(), c.IdempotencyKey)
			if err != nil || !found || res.JSON != nil || !res.CommittedAt.IsZero() || res.DecisionID != c.DecisionID {
				t.Fatalf("Lookup = %+v, %v, %v; want the record, committed, without a result", res, found, err)
			}
			again, err := e.Execute(t.Context(), c)
			if err != nil || !again.Replayed || again.JSON != nil {
				t.Fatalf("Execute again = %+v, %v; want a replay without a result", again, err)
			}
			if err := e.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM dbo.orders WHERE customer = @p1`, customer).Scan(&n); err != nil || n != 1 {
				t.Errorf("rows after the retry = %d, %v; want still 1 (the procedure ran again)", n, err)
			}
		})
	}
}
