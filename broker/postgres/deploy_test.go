package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
)

// TestDeployScripts applies deploy/postgres to a fresh database and runs
// the demo routes as the least-privilege broker role: the routes work, the
// trigger stamps the session context, and the role cannot touch the tables
// directly. Another session that sets sqlgate.* itself is stamped with its
// own login, and gets no row past docs/postgres.md's RLS policy.
func TestDeployScripts(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dsnFor(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) }) // after the drops below
	const db = "deploy_check"
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+testDB+"_"+db); err != nil {
		t.Fatal(err)
	}
	writer := testDB + "_writer" // a login outside the broker's role
	t.Cleanup(func() {
		// Runs after the database is dropped; fails harmlessly while another
		// database still grants the role something.
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS sales_reader")
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS sqlgate_broker")
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+writer)
	})
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE "+testDB+"_"+db+" WITH (FORCE)")
	})
	owner, err := pgx.Connect(ctx, dsnFor(map[string]string{"dbname": testDB + "_" + db}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = owner.Close(context.Background()) }()
	// As on PostgreSQL 14 and earlier, or a database upgraded from one:
	// PUBLIC may create in public.
	if _, err := owner.Exec(ctx, "GRANT CREATE ON SCHEMA public TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "deploy", "postgres")
	for _, f := range []string{"01-idempotency.sql", "02-orders-example.sql", "03-broker-role.sql"} {
		sql, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	cat, err := route.LoadFile(filepath.Join(dir, "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := postgres.Open(ctx, postgres.Config{
		Name: "orders", MaxConns: 2,
		DSN: dsnFor(map[string]string{"dbname": testDB + "_" + db, "user": "sqlgate_broker", "password": ""}),
	})
	if err != nil {
		t.Fatalf("Open as sqlgate_broker: %v", err)
	}
	defer e.Close()
	for _, r := range cat.Routes() {
		if err := e.Check(ctx, r); err != nil {
			t.Errorf("Check(%s) = %v", r.Subject, err)
		}
	}
	call := func(subject, payload string) *brokertest.Decoded {
		t.Helper()
		r, _ := cat.Lookup(subject)
		c, err := brokertest.NewCall(r, payload, "")
		if err != nil {
			t.Fatal(err)
		}
		c.Principal, c.DecisionID = "alice@example.com", "dec-7"
		res, err := e.Execute(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		d, err := brokertest.DecodeResult(res.JSON)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	created := call("orders.v1.create", `{"customer":"O'Brien; DROP TABLE sales.orders","amount":99.95,"note":null}`)
	id := created.Rows[0]["id"].(json.Number)
	got := call("orders.v1.get", `{"id":`+string(id)+`}`)
	if row := got.Rows[0]; row["customer"] != "O'Brien; DROP TABLE sales.orders" || row["amount"] != json.Number("99.95") ||
		row["status"] != "open" || row["created_by"] != "alice@example.com" {
		t.Errorf("get = %v", row)
	}
	cancelled := call("orders.v1.cancel", `{"id":`+string(id)+`}`)
	if cancelled.Output["previous_status"] != "open" {
		t.Errorf("cancel output = %v, want previous_status open", cancelled.Output)
	}
	var who, decision string
	var n int
	if err := owner.QueryRow(ctx, `SELECT count(*), min(changed_by), min(decision_id) FROM sales.order_history WHERE order_id = $1`, string(id)).Scan(&n, &who, &decision); err != nil {
		t.Fatal(err)
	}
	if n != 2 || who != "alice@example.com" || decision != "dec-7" {
		t.Errorf("order_history: %d rows by %q decision %q, want 2 rows by alice@example.com, dec-7", n, who, decision)
	}
	// Least privilege: the broker role reaches the data only through routines.
	direct := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "SELECT * FROM sales.orders"}})
	c := &broker.Call{Route: direct, Params: map[string]any{}, IdempotencyKey: "direct", RequestHash: "h"}
	var dbe *broker.DBError
	if _, err := e.Execute(ctx, c); !errors.As(err, &dbe) || dbe.State != "42501" {
		t.Errorf("direct SELECT as sqlgate_broker = %v, want permission denied (42501)", err)
	}
	// Any session may set sqlgate.*: outside the broker's role the defaults
	// and the trigger stamp the session's own login, whatever it set.
	for _, q := range []string{
		"CREATE ROLE " + writer + " LOGIN",
		"GRANT USAGE ON SCHEMA sales TO " + writer,
		"GRANT SELECT, INSERT, UPDATE ON sales.orders TO " + writer,
	} {
		if _, err := owner.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	forger, err := pgx.Connect(ctx, dsnFor(map[string]string{"dbname": testDB + "_" + db, "user": writer, "password": ""}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = forger.Close(context.Background()) }()
	var forged int64
	if err := forger.QueryRow(ctx, `SELECT set_config('sqlgate.principal', 'alice@example.com', false), set_config('sqlgate.correlation_id', 'forged', false),
		set_config('sqlgate.decision_id', 'forged', false)`).Scan(new(string), new(string), new(string)); err != nil {
		t.Fatal(err)
	}
	if err := forger.QueryRow(ctx, `INSERT INTO sales.orders (customer, amount) VALUES ('forged', 1) RETURNING id`).Scan(&forged); err != nil {
		t.Fatalf("insert as %s: %v", writer, err)
	}
	if _, err := forger.Exec(ctx, `UPDATE sales.orders SET status = 'cancelled' WHERE id = $1`, forged); err != nil {
		t.Fatalf("update as %s: %v", writer, err)
	}
	var createdBy, correlation string
	if err := owner.QueryRow(ctx, `SELECT created_by, correlation_id FROM sales.orders WHERE id = $1`, forged).Scan(&createdBy, &correlation); err != nil {
		t.Fatal(err)
	}
	if createdBy != writer || correlation != "" {
		t.Errorf("a row %s inserted after SET sqlgate.principal: created_by %q, correlation_id %q; want %q and empty", writer, createdBy, correlation, writer)
	}
	rows, err := owner.Query(ctx, `SELECT changed_by || '/' || correlation_id || '/' || decision_id FROM sales.order_history WHERE order_id = $1 ORDER BY txid`, forged)
	if err != nil {
		t.Fatal(err)
	}
	stamps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := writer + "//"; len(stamps) != 2 || stamps[0] != want || stamps[1] != want {
		t.Errorf("order_history of %s's insert and update after SET sqlgate.*: %q, want two rows %q", writer, stamps, want)
	}
	if _, err := owner.Exec(ctx, `DELETE FROM sales.orders WHERE id = $1`, forged); err != nil {
		t.Fatal(err)
	}

	// Nor create objects: not in public either, where PUBLIC could.
	create := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "CREATE TABLE public.broker_owned (id int)"}})
	c = &broker.Call{Route: create, Params: map[string]any{}, IdempotencyKey: "create", RequestHash: "h"}
	if _, err := e.Execute(ctx, c); !errors.As(err, &dbe) || dbe.State != "42501" {
		t.Errorf("CREATE TABLE public.broker_owned as sqlgate_broker = %v, want permission denied (42501)", err)
	}
	// The grants let the broker prune its records (the hourly retention).
	if n, err := e.Prune(ctx, time.Now().Add(time.Hour)); err != nil || n != 3 {
		t.Errorf("Prune as sqlgate_broker = %d, %v; want the 3 calls' records", n, err)
	}

	// 04 (optional) is enough to issue, use and revoke a login as the broker.
	issuance, err := os.ReadFile(filepath.Join(dir, "04-credential-issuance.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if _, err := owner.Exec(ctx, string(issuance)); err != nil {
			t.Fatalf("04-credential-issuance.sql: %v", err)
		}
	}
	// One connection: the check after revocation reads the connection the
	// revocation used.
	brokerPool, err := pgxpool.New(ctx, dsnFor(map[string]string{"dbname": testDB + "_" + db, "user": "sqlgate_broker", "password": "", "pool_max_conns": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer brokerPool.Close()
	li, err := postgres.NewLoginIssuer(brokerPool, postgres.LoginConfig{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	p := identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}
	pw, err := broker.GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	spec := broker.LoginSpec{
		LeaseID: "lease-deploy", Username: broker.LoginName(broker.DefaultLoginPrefix, &p), Password: pw, Role: "sales_reader",
		ExpiresAt: time.Now().Add(time.Hour), Principal: p.Display(),
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{spec.Username}.Sanitize())
	})
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin as sqlgate_broker: %v", err)
	}
	issued, err := pgx.Connect(ctx, dsnFor(map[string]string{"dbname": testDB + "_" + db, "user": spec.Username, "password": ""}))
	if err != nil {
		t.Fatalf("connect as the issued login: %v", err)
	}
	var orders int
	if err := issued.QueryRow(ctx, "SELECT count(*) FROM sales.orders").Scan(&orders); err != nil || orders != 1 {
		t.Errorf("the issued reader counts %d orders, %v; want 1", orders, err)
	}
	if _, err := issued.Exec(ctx, "DELETE FROM sales.orders"); sqlState(err) != "42501" {
		t.Errorf("the issued reader deleted: %v, want permission denied (42501)", err)
	}
	// A SECURITY DEFINER routine added after 02 is not PUBLIC's to call: not
	// the reader's, which has USAGE on the schema, nor the broker's until
	// granted.
	if _, err := owner.Exec(ctx, `CREATE FUNCTION sales.set_status(id bigint, status text) RETURNS void
		LANGUAGE sql SECURITY DEFINER SET search_path = sales, pg_temp AS $$ UPDATE sales.orders o SET status = set_status.status WHERE o.id = set_status.id $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := issued.Exec(ctx, "SELECT sales.set_status($1, 'cancelled')", string(id)); sqlState(err) != "42501" {
		t.Errorf("the issued reader called a routine created after 02: %v, want permission denied (42501)", err)
	}
	var brokerMay bool
	if err := owner.QueryRow(ctx, "SELECT has_function_privilege('sqlgate_broker', 'sales.set_status(bigint, text)', 'EXECUTE')").Scan(&brokerMay); err != nil || brokerMay {
		t.Errorf("sqlgate_broker may execute a routine created after 03 without a grant: %v, %v", brokerMay, err)
	}
	// docs/postgres.md's RLS policy: the issued login sees alice's order only
	// if it can pass for alice, which SET sqlgate.principal must not do.
	if _, err := owner.Exec(ctx, docsSQL(t, "ALTER TABLE sales.orders ENABLE ROW LEVEL SECURITY")); err != nil {
		t.Fatalf("docs/postgres.md's row-level security policy: %v", err)
	}
	if _, err := issued.Exec(ctx, "SET sqlgate.principal = 'alice@example.com'"); err != nil {
		t.Fatal(err)
	}
	if err := issued.QueryRow(ctx, "SELECT count(*) FROM sales.orders").Scan(&orders); err != nil || orders != 0 {
		t.Errorf("with the RLS policy, the issued reader that set sqlgate.principal to alice's counts %d orders, %v; want 0", orders, err)
	}
	// Revocation ends the session that is still open: sqlgate_broker is
	// NOINHERIT, so pg_signal_backend's privilege must be put in effect
	// for pg_terminate_backend (42501 otherwise, and the lease would stay
	// revoking while the session kept working).
	defer func() { _ = issued.Close(context.Background()) }()
	if err := li.RevokeLogin(ctx, spec); err != nil {
		t.Fatalf("RevokeLogin as sqlgate_broker with the login's session open: %v", err)
	}
	if _, err := issued.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the issued login's open session survived its revocation")
	}
	// The broker's session role is back to itself (SET LOCAL ROLE ended
	// with the transaction) on the pooled connection.
	var current string
	if err := brokerPool.QueryRow(ctx, "SELECT current_user").Scan(&current); err != nil || current != "sqlgate_broker" {
		t.Errorf("after revocation the broker's pool runs as %q (%v), want sqlgate_broker", current, err)
	}
	var left int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", spec.Username).Scan(&left); err != nil || left != 0 {
		t.Errorf("the revoked login is still there (%d, %v)", left, err)
	}
}

// docsSQL returns the sql code block of docs/postgres.md that starts with
// first.
func docsSQL(t *testing.T, first string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "postgres.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```sql\n"+first)
	if !ok {
		t.Fatalf("docs/postgres.md has no sql block starting with %q", first)
	}
	block, _, _ = strings.Cut(block, "```")
	return first + block
}
