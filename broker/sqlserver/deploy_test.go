package sqlserver

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

var deployDir = filepath.Join("..", "..", "deploy", "sqlserver")

// TestGoldenDemoCalls shows the call batch each demo route of
// deploy/sqlserver sends, with its parameter types.
func TestGoldenDemoCalls(t *testing.T) {
	cat, err := route.LoadFile(filepath.Join(deployDir, "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	payloads := map[string]string{
		"orders.v1.create": `{"customer":"ACME","amount":12.50,"note":"rush"}`,
		"orders.v1.get":    `{"id":42}`,
		"orders.v1.cancel": `{"id":42}`,
	}
	var out strings.Builder
	for _, r := range cat.Routes() {
		c, err := brokertest.NewCall(r, payloads[r.Subject], "k")
		if err != nil {
			t.Fatal(err)
		}
		shape, err := buildCall(c)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "-- route %s\n%s\n", r.Subject, describeCall(shape))
	}
	golden(t, "demo_calls", out.String())
}

// sqlcmdScript turns a deploy script into batches the driver can run:
// sqlcmd variables substituted, :on error exit dropped, split on GO.
func sqlcmdScript(t *testing.T, name string, vars map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`(?m)^:on error exit\s*$`).ReplaceAllString(string(b), "")
	for k, v := range vars {
		s = strings.ReplaceAll(s, "$("+k+")", v)
	}
	if m := regexp.MustCompile(`\$\([A-Z_]+\)`).FindString(s); m != "" {
		t.Fatalf("%s: variable %s not set", name, m)
	}
	var out []string
	for _, batch := range regexp.MustCompile(`(?m)^GO\s*$`).Split(s, -1) {
		if strings.TrimSpace(batch) != "" {
			out = append(out, batch)
		}
	}
	return out
}

// deploy/sqlserver/01-idempotency.sql runs IdempotencyDDL, one statement
// per batch: the table and the committed_at index PruneBatch seeks on.
func TestDeployIdempotencyMatchesDDL(t *testing.T) {
	t.Parallel()
	var stmts []string
	for _, batch := range sqlcmdScript(t, "01-idempotency.sql", nil) {
		var lines []string
		for _, l := range strings.Split(batch, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if s := strings.TrimSpace(strings.Join(lines, "\n")); s != "" {
			stmts = append(stmts, s)
		}
	}
	if got := strings.Join(stmts, "\n"); got != IdempotencyDDL {
		t.Errorf("01-idempotency.sql runs\n%s\nwant IdempotencyDDL\n%s", got, IdempotencyDDL)
	}
	if !strings.Contains(IdempotencyDDL, "CREATE INDEX ix_sqlgate_idempotency_committed_at ON sqlgate.idempotency (committed_at)") ||
		!strings.Contains(PruneBatch, "ORDER BY committed_at") {
		t.Error("IdempotencyDDL lacks the committed_at index PruneBatch relies on")
	}
}

// TestLiveDeployScripts applies deploy/sqlserver to the test database,
// logs in as the least-privilege broker login and runs the demo routes.
func TestLiveDeployScripts(t *testing.T) {
	if liveDSN == "" {
		t.Skip(envDSN + " is not set: SQL Server live tests skipped (set it to a server where the login may create databases and logins)")
	}
	ctx := t.Context()
	admin, err := sql.Open("sqlserver", liveDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	rb := make([]byte, 12)
	_, _ = rand.Read(rb)
	login, password := "sqlgate_broker_"+hex.EncodeToString(rb[:4]), "Sg1!"+hex.EncodeToString(rb)
	vars := map[string]string{"SQLGATE_LOGIN": login, "SQLGATE_PASSWORD": password, "SQLGATE_AUTH": "sql", "SQLGATE_SCHEMA": "sales"}
	run := func(db *sql.DB, name string) {
		for _, batch := range sqlcmdScript(t, name, vars) {
			if _, err := db.ExecContext(ctx, batch); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	run(admin, "00-login.sql") // the login is server-level: dropped below
	t.Cleanup(func() {
		// The executor's pool is closed by now, but its sessions may not
		// have ended: end them, then drop the login, and say so if it
		// stays behind on the server.
		ctx := context.Background()
		var remaining int
		if err := admin.QueryRowContext(ctx, KillSessionsBatch, sql.Named("login", login)).Scan(&remaining); err != nil || remaining != 0 {
			t.Errorf("cleanup: ending the sessions of %s: %d remain, %v", login, remaining, err)
		}
		if _, err := admin.ExecContext(ctx, DropLoginBatch, sql.Named("login", login)); err != nil {
			t.Errorf("cleanup: login %s left on the server: %v", login, err)
		}
	})
	run(admin, "01-idempotency.sql")
	run(admin, "03-orders-example.sql")
	run(admin, "02-broker-user.sql")
	dsn, err := withParams(liveDSN, map[string]string{"user id": login, "password": password})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, Config{Name: "orders", DSN: dsn, MaxConns: 2, AllowInsecureTransport: liveInsecure})
	if err != nil {
		t.Fatalf("Open as %s: %v", login, err)
	}
	defer func() { _ = e.Close() }()
	cat, err := route.LoadFile(filepath.Join(deployDir, "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
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
	created := call("orders.v1.create", `{"customer":"O'Brien; DROP TABLE sales.orders","amount":99.95}`)
	id := created.Rows[0]["id"].(json.Number)
	row := call("orders.v1.get", `{"id":`+string(id)+`}`).Rows[0]
	if row["customer"] != "O'Brien; DROP TABLE sales.orders" || row["amount"] != json.Number("99.95") || row["created_by"] != "alice@example.com" {
		t.Errorf("get = %v", row)
	}
	if out := call("orders.v1.cancel", `{"id":`+string(id)+`}`).Output; out["previous_status"] != "open" {
		t.Errorf("cancel output = %v", out)
	}
	var who, decision string
	if err := admin.QueryRowContext(ctx, `SELECT changed_by, decision_id FROM sales.order_history WHERE order_id = @id`, sql.Named("id", mssql.VarChar(id))).Scan(&who, &decision); err != nil {
		t.Fatal(err)
	}
	if who != "alice@example.com" || decision != "dec-7" {
		t.Errorf("order_history changed_by, decision_id = %q, %q", who, decision)
	}
	dc, err := route.New([]route.Spec{{Subject: "t.direct", Database: "orders", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT * FROM sales.orders"}}})
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := dc.Lookup("t.direct")
	_, err = e.Execute(ctx, &broker.Call{Route: direct, Params: map[string]any{}, IdempotencyKey: "direct", RequestHash: "h"})
	var dbe *broker.DBError
	if !errors.As(err, &dbe) || dbe.Number != 229 {
		t.Errorf("direct SELECT as the broker login = %v, want permission denied (229)", err)
	}

	// Another login that may call the procedures (here one sqlgate issued)
	// sets the session context keys itself, claiming to be alice: the
	// procedure and the trigger stamp its own login, not the claim. And the
	// broker's executor role is never issued.
	for _, b := range []string{
		`IF DATABASE_PRINCIPAL_ID(N'sg_sales_caller') IS NULL CREATE ROLE sg_sales_caller;`,
		`GRANT EXECUTE ON SCHEMA::sales TO sg_sales_caller;`,
	} {
		if _, err := admin.ExecContext(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	issuer, err := NewLoginIssuer(admin, LoginConfig{Name: "orders", ClientHost: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuer.CreateLogin(ctx, liveSpec(t, "sqlgate_executor")); !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
		t.Errorf("CreateLogin(sqlgate_executor) = %v, want refused as privileged", err)
	}
	spec := liveSpec(t, "sg_sales_caller")
	if err := issuer.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin(sg_sales_caller): %v", err)
	}
	revoke := spec
	revoke.Password = ""
	t.Cleanup(func() { _ = issuer.RevokeLogin(context.Background(), revoke) })
	forger, err := connectAs(t, spec.Username, spec.Password)
	if err != nil {
		t.Fatalf("log in as the issued login: %v", err)
	}
	conn, err := forger.Conn(ctx) // one session: the keys it sets must reach the calls
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, k := range []string{"principal", "correlation_id", "decision_id"} {
		if _, err := conn.ExecContext(ctx, `EXEC sys.sp_set_session_context @key = @p1, @value = N'forged', @read_only = 1;`, "sqlgate."+k); err != nil {
			t.Fatalf("sp_set_session_context as the issued login: %v", err)
		}
	}
	var forgedID int64
	if err := conn.QueryRowContext(ctx, `EXEC sales.create_order @customer = N'forger', @amount = 1;`).Scan(&forgedID); err != nil {
		t.Fatalf("sales.create_order as the issued login: %v", err)
	}
	if _, err := conn.ExecContext(ctx, `DECLARE @s nvarchar(20); EXEC sales.cancel_order @id = @p1, @previous_status = @s OUTPUT;`, forgedID); err != nil {
		t.Fatalf("sales.cancel_order as the issued login: %v", err)
	}
	var createdBy, correlation string
	if err := admin.QueryRowContext(ctx, `SELECT created_by, correlation_id FROM sales.orders WHERE id = @p1`, forgedID).Scan(&createdBy, &correlation); err != nil {
		t.Fatal(err)
	}
	if createdBy != spec.Username || correlation != "" {
		t.Errorf("order created by the issued login with forged keys: created_by, correlation_id = %q, %q; want %q, empty", createdBy, correlation, spec.Username)
	}
	if err := admin.QueryRowContext(ctx, `SELECT changed_by, decision_id FROM sales.order_history WHERE order_id = @p1`, forgedID).Scan(&who, &decision); err != nil {
		t.Fatal(err)
	}
	if who != spec.Username || decision != "" {
		t.Errorf("order_history of the issued login's cancel: changed_by, decision_id = %q, %q; want %q, empty", who, decision, spec.Username)
	}
}

// TestDeploySessionContextTrustedForBrokerOnly: any session may set the
// sqlgate.* SESSION_CONTEXT keys for itself (sp_set_session_context needs
// no permission), so 03-orders-example.sql reads them only in sessions of
// a sqlgate_executor member (the broker; the role check never grants that
// role to an issued login) and stamps every other session with its own
// login; and every SESSION_CONTEXT read docs/sqlserver.md recommends (the
// RLS predicate included) carries the same guard. The live check is
// TestLiveDeployScripts.
func TestDeploySessionContextTrustedForBrokerOnly(t *testing.T) {
	t.Parallel()
	reads := 0
	for _, batch := range sqlcmdScript(t, "03-orders-example.sql", nil) {
		var code []string
		for _, l := range strings.Split(batch, "\n") {
			if c, _, _ := strings.Cut(l, "--"); strings.TrimSpace(c) != "" {
				code = append(code, c)
			}
		}
		text := strings.Join(code, "\n")
		n := strings.Count(text, "SESSION_CONTEXT(")
		if n == 0 {
			continue
		}
		reads += n
		if g := strings.Count(text, "CASE WHEN @sqlgate = 1 THEN CAST(SESSION_CONTEXT("); g != n {
			t.Errorf("03-orders-example.sql: %d of %d SESSION_CONTEXT reads are not guarded by @sqlgate in\n%s", n-g, n, text)
		}
		if !strings.Contains(text, "DECLARE @sqlgate bit = CASE WHEN IS_MEMBER(N'sqlgate_executor') = 1 THEN 1 ELSE 0 END;") {
			t.Errorf("03-orders-example.sql: a batch reads SESSION_CONTEXT without testing IS_MEMBER(N'sqlgate_executor'):\n%s", text)
		}
		if strings.Contains(strings.ToUpper(text), "EXECUTE AS") {
			t.Errorf("03-orders-example.sql: a module that reads SESSION_CONTEXT runs with EXECUTE AS (IS_MEMBER would test the impersonated user)")
		}
		if strings.Count(text, "ORIGINAL_LOGIN()") == 0 {
			t.Errorf("03-orders-example.sql: a batch reads SESSION_CONTEXT with no fallback to the session's login")
		}
	}
	if reads == 0 {
		t.Fatal("03-orders-example.sql reads no SESSION_CONTEXT")
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "sqlserver.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Reading SESSION_CONTEXT elsewhere\n")
	if !ok {
		t.Fatal("docs/sqlserver.md has no section Reading SESSION_CONTEXT elsewhere")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	fence := regexp.MustCompile("(?s)```sql\n(.*?)```")
	var snippets []string
	for _, m := range fence.FindAllStringSubmatch(section, -1) {
		snippets = append(snippets, m[1])
	}
	snippets = append(snippets, regexp.MustCompile("`[^`\n]+`").FindAllString(fence.ReplaceAllString(section, ""), -1)...)
	guarded := 0
	for _, sn := range snippets {
		if !strings.Contains(sn, "SESSION_CONTEXT(N'sqlgate.") {
			continue
		}
		for _, l := range strings.Split(sn, "\n") {
			if strings.Contains(l, "SESSION_CONTEXT(N'sqlgate.") && !strings.Contains(sn, "IS_MEMBER(N'sqlgate_executor') = 1") {
				t.Errorf("docs/sqlserver.md recommends reading SESSION_CONTEXT without the sqlgate_executor guard: %s", strings.TrimSpace(l))
			}
		}
		guarded++
	}
	if guarded == 0 || !strings.Contains(section, "Any session can set") {
		t.Error("docs/sqlserver.md does not say that any session can set the keys and how to guard reading them")
	}
}

// issuanceGrants returns the permissions deploy/sqlserver/
// 04-credential-issuance.sql grants in master and in a database, with the
// scripting variables vars: every N'GRANT ... TO ' literal, in the branch
// of IF DB_NAME() = N'master' it stands in.
func issuanceGrants(t *testing.T, vars map[string]string) (master, database map[string]bool) {
	t.Helper()
	script := strings.Join(sqlcmdScript(t, "04-credential-issuance.sql", vars), "\n")
	master, database = map[string]bool{}, map[string]bool{}
	branch := regexp.MustCompile(`(?s)IF DB_NAME\(\) = N'master'\s*BEGIN(.*?)\nEND\s*ELSE\s*BEGIN(.*)\nEND;`).FindStringSubmatch(script)
	if branch == nil {
		t.Fatal("04-credential-issuance.sql: no IF DB_NAME() = N'master' BEGIN ... END ELSE BEGIN ... END; block")
	}
	grant := regexp.MustCompile(`N'GRANT ([A-Z ,]+?) TO '`)
	for i, set := range []map[string]bool{master, database} {
		for _, m := range grant.FindAllStringSubmatch(branch[i+1], -1) {
			for _, p := range strings.Split(m[1], ",") {
				set[strings.TrimSpace(p)] = true
			}
		}
	}
	return master, database
}

// checkedPermissions returns the permissions a batch requires through
// HAS_PERMS_BY_NAME: on the server (NULL, NULL) and on the database.
func checkedPermissions(batch string) (server, database []string) {
	for _, m := range regexp.MustCompile(`HAS_PERMS_BY_NAME\((NULL, NULL|DB_NAME\(\), N'DATABASE'), N'([A-Z ]+)'\)`).FindAllStringSubmatch(batch, -1) {
		if m[1] == "NULL, NULL" {
			server = append(server, m[2])
		} else {
			database = append(database, m[2])
		}
	}
	return server, database
}

// TestDeployIssuanceGrantsWhatTheBatchesCheck: every permission a server
// mode batch checks before it reads the catalog is granted by
// 04-credential-issuance.sql (the database ones in the database, the
// server ones in master), so the grants the docs prescribe are the grants
// the batches need.
func TestDeployIssuanceGrantsWhatTheBatchesCheck(t *testing.T) {
	t.Parallel()
	master, database := issuanceGrants(t, map[string]string{"SQLGATE_LOGIN": "sqlgate_broker", "SQLGATE_CONTAINED": "0"})
	for name, batch := range map[string]string{"RoleCheckBatch": RoleCheckBatch, "KillSessionsBatch": KillSessionsBatch, "LoginGuardBatch": LoginGuardBatch} {
		server, db := checkedPermissions(batch)
		for _, p := range server {
			if !master[p] {
				t.Errorf("%s checks server permission %s; 04-credential-issuance.sql does not grant it in master (grants %v)", name, p, master)
			}
		}
		for _, p := range db {
			if !database[p] {
				t.Errorf("%s checks database permission %s; 04-credential-issuance.sql does not grant it in the database (grants %v)", name, p, database)
			}
		}
	}
	for _, p := range []string{"ALTER ANY USER", "ALTER ANY ROLE", "VIEW DEFINITION"} {
		if !database[p] {
			t.Errorf("04-credential-issuance.sql does not grant %s in the database (grants %v)", p, database)
		}
	}
	for _, p := range []string{"ALTER ANY LOGIN", "ALTER ANY CONNECTION", "VIEW SERVER STATE"} {
		if !master[p] {
			t.Errorf("04-credential-issuance.sql does not grant %s in master (grants %v)", p, master)
		}
	}
}

// TestDeployIssuanceGrantsContainedMode: with SQLGATE_CONTAINED=1 the
// script grants, in the database, what the contained batches check on
// Azure SQL Database (VIEW DATABASE STATE) plus KILL DATABASE CONNECTION
// for KILL there, and VIEW DEFINITION for the guard; in master (a
// contained database on SQL Server or Managed Instance) what they check
// there (VIEW SERVER STATE) plus ALTER ANY CONNECTION.
func TestDeployIssuanceGrantsContainedMode(t *testing.T) {
	t.Parallel()
	master, database := issuanceGrants(t, map[string]string{"SQLGATE_LOGIN": "sqlgate_broker", "SQLGATE_CONTAINED": "1"})
	for name, batch := range map[string]string{"RoleCheckBatch": RoleCheckBatch, "ContainedGuardBatch": ContainedGuardBatch, "ContainedKillSessionsBatch": ContainedKillSessionsBatch} {
		server, db := checkedPermissions(batch)
		for _, p := range server {
			if !master[p] {
				t.Errorf("%s checks server permission %s; 04-credential-issuance.sql does not grant it in master (grants %v)", name, p, master)
			}
		}
		for _, p := range db {
			if !database[p] {
				t.Errorf("%s checks database permission %s; 04-credential-issuance.sql does not grant it in the database (grants %v)", name, p, database)
			}
		}
	}
	for _, p := range []string{"ALTER ANY USER", "ALTER ANY ROLE", "VIEW DEFINITION", "VIEW DATABASE STATE", "KILL DATABASE CONNECTION"} {
		if !database[p] {
			t.Errorf("contained mode: 04-credential-issuance.sql does not grant %s in the database (grants %v)", p, database)
		}
	}
	for _, p := range []string{"ALTER ANY CONNECTION", "VIEW SERVER STATE"} {
		if !master[p] {
			t.Errorf("contained mode: 04-credential-issuance.sql does not grant %s in master (grants %v)", p, master)
		}
	}
	// The contained batch checks a server permission only off Azure SQL
	// Database, where HAS_PERMS_BY_NAME has no server form.
	if !strings.Contains(ContainedKillSessionsBatch, "CASE WHEN CAST(SERVERPROPERTY('EngineEdition') AS int) = 5") {
		t.Error("ContainedKillSessionsBatch does not choose the permission it checks by edition")
	}
}

// sqlcmdCommand is a line of a docs page that runs a deploy script.
var sqlcmdCommand = regexp.MustCompile(`sqlcmd .*-i deploy/sqlserver/([0-9a-z-]+\.sql)`)

// TestDeployScriptVariablesDocumented: every sqlcmd command line of
// docs/sqlserver.md and docs/credentials.md that runs a deploy script sets
// (with -v, or exported earlier in its code block) every scripting
// variable the script uses, and each script's header names them: sqlcmd
// stops at a variable that is not set.
func TestDeployScriptVariablesDocumented(t *testing.T) {
	t.Parallel()
	used := func(name string) []string {
		b, err := os.ReadFile(filepath.Join(deployDir, name))
		if err != nil {
			t.Fatal(err)
		}
		var vars []string
		seen := map[string]bool{}
		header := ""
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "--") {
				header += l + "\n"
				continue
			}
			for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(l, -1) {
				if !seen[m[1]] {
					seen[m[1]] = true
					vars = append(vars, m[1])
				}
			}
		}
		for _, v := range vars {
			if !strings.Contains(header, v) {
				t.Errorf("%s uses $(%s); its header does not say how to set it", name, v)
			}
		}
		return vars
	}
	commands := 0
	for _, doc := range []string{"sqlserver.md", "credentials.md"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		exported := map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "```") {
				exported = map[string]bool{}
			}
			for _, m := range regexp.MustCompile(`export ([A-Z_]+)`).FindAllStringSubmatch(l, -1) {
				exported[m[1]] = true
			}
			m := sqlcmdCommand.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			commands++
			for _, v := range used(m[1]) {
				if !exported[v] && !regexp.MustCompile(`\b`+v+`=`).MatchString(l) {
					t.Errorf("docs/%s: %q does not set %s, which %s uses", doc, strings.TrimSpace(l), v, m[1])
				}
			}
		}
	}
	if commands < 6 {
		t.Errorf("found %d sqlcmd commands in the docs; want the setup of every script, 04 in both modes included", commands)
	}
}
