package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/sqlserver"
)

// clientCertEdit returns an edit of the checkable example that gives it
// private keys of client certificates, mode mode, where the drivers read
// them without a mode check of their own: the SQL Server database
// authenticates to Entra with a certificate (azureAD.clientCertPath), the
// PostgreSQL database's connection string (SQLGATE_BILLING_DSN, URL form)
// and the control database's (control.dsnFile, keyword/value form) name an
// sslkey. It returns the paths of the three keys.
func clientCertEdit(t *testing.T, mode os.FileMode) (edit func(text, secrets string) string, keys *[3]string) {
	keys = new([3]string)
	return func(text, secrets string) string {
		dir := filepath.Join(secrets, "client-certs")
		for i, name := range []string{"orders", "billing", "control"} {
			cert, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
			writeTestTLS(t, filepath.Join(dir, name+"-ca.crt"), cert, key)
			if err := os.Chmod(key, mode); err != nil {
				t.Fatal(err)
			}
			keys[i] = key
		}
		t.Setenv("SQLGATE_BILLING_DSN", "postgres://sqlgate-broker@billing-db.example.com/billing?sslmode=verify-full&sslcert="+
			filepath.Join(dir, "billing.crt")+"&sslkey="+keys[1])
		writeFile(t, filepath.Join(secrets, "control.dsn"), "host=control-db.example.com dbname=sqlgate user=sqlgate sslmode=verify-full "+
			"sslcert='"+filepath.Join(dir, "control.crt")+"' sslkey = '"+keys[2]+"'\n", 0o600)
		from := "passwordFile: " + secrets + "/orders.password"
		if !strings.Contains(text, from) {
			t.Fatalf("the example no longer has %q", from)
		}
		return strings.Replace(text, from, "azureAD: {mode: servicePrincipal, clientID: 33333333-3333-3333-3333-333333333333, "+
			"tenantID: 00000000-0000-0000-0000-000000000000, clientCertPath: "+keys[0]+"}", 1)
	}, keys
}

// TestServeCheckClientCertKeyModes checks that --check applies the secret
// files' rules to the private keys of client certificates: an Entra
// certificate for SQL Server (azureAD.clientCertPath) and the sslkey of a
// PostgreSQL connection string, the control database's and a target
// database's. A 0644 key passed: the SQL Server driver and pgx read a key
// whatever its mode (libpq refuses one others may read).
func TestServeCheckClientCertKeyModes(t *testing.T) {
	edit, keys := clientCertEdit(t, 0o644)
	out, _, err := checkWith(t, edit)
	if err == nil {
		t.Fatalf("--check passed private keys of mode 0644:\n%s", out)
	}
	for i, key := range []string{
		"databases[0].sqlserver.azureAD.clientCertPath: ",
		"databases[1].postgres connection string's sslkey: ",
		"control connection string's sslkey: ",
	} {
		if want := key + keys[i] + " is accessible to other users (mode 0644)"; !strings.Contains(err.Error(), want) {
			t.Errorf("--check: %v\nwant it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Error("the error quotes a key")
	}

	edit, _ = clientCertEdit(t, 0o600)
	if out, _, err := checkWith(t, edit); err != nil {
		t.Errorf("--check refused private keys of mode 0600: %v\n%s", err, out)
	}
}

// TestClientCertKeysRefusedAtOpen checks that serve refuses the same keys
// when it opens the databases, before the driver reads them.
func TestClientCertKeysRefusedAtOpen(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	writeTestTLS(t, filepath.Join(dir, "ca.crt"), cert, key)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	want := key + " is accessible to other users (mode 0644)"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	dsn := "postgres://sqlgate@127.0.0.1:1/orders?sslmode=verify-full&sslcert=" + cert + "&sslkey=" + key
	if _, err := openExecutor(ctx, DatabaseConfig{Postgres: &postgres.Config{Name: "orders", DSN: dsn}}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a PostgreSQL database whose sslkey is 0644: %v, want %q", err, want)
	}
	dsnFile := filepath.Join(dir, "control.dsn")
	writeFile(t, dsnFile, "host=127.0.0.1 port=1 sslmode=verify-full sslcert="+cert+" sslkey="+key+"\n", 0o600)
	if db, _, err := openControl(ControlConfig{Dialect: "postgres", DSNFile: dsnFile}); err == nil || !strings.Contains(err.Error(), want) {
		if db != nil {
			_ = db.Close()
		}
		t.Errorf("a control database whose sslkey is 0644: %v, want %q", err, want)
	}
	sq := &sqlserver.Config{Name: "orders", DSN: "sqlserver://127.0.0.1:1?database=orders&encrypt=strict", AzureAD: &sqlserver.AzureAD{
		Mode: sqlserver.ModeServicePrincipal, ClientID: "33333333-3333-3333-3333-333333333333", TenantID: "00000000-0000-0000-0000-000000000000", ClientCertPath: key,
	}}
	if _, err := openExecutor(ctx, DatabaseConfig{SQLServer: sq}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a SQL Server database whose azureAD.clientCertPath is 0644: %v, want %q", err, want)
	}
}

// TestPostgresClientCertFiles checks which key and certificate files pgx
// reads for a connection string: its sslkey and sslcert in either form
// (quoted, escaped, several hosts), else PGSSLKEY and PGSSLCERT; none with
// sslcertmode=disable.
func TestPostgresClientCertFiles(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.postgresql
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		dsn, key, cert string
		env            map[string]string
	}{
		{dsn: "postgres://u@h/db?sslmode=verify-full&sslkey=/k/a.key&sslcert=/k/a.crt", key: "/k/a.key", cert: "/k/a.crt"},
		{dsn: "postgresql://u:p@h1:5432,h2:5433/db?sslkey=%2Fk%2Fb.key", key: "/k/b.key"},
		{dsn: "host=h sslkey='/k/with space.key' sslcert=/k/c.crt", key: "/k/with space.key", cert: "/k/c.crt"},
		{dsn: `host=h  sslkey = /k/back\ slash.key dbname='it\'s'`, key: "/k/back slash.key"},
		{dsn: "host=h dbname=db", env: map[string]string{"PGSSLKEY": "/env/k.key", "PGSSLCERT": "/env/k.crt"}, key: "/env/k.key", cert: "/env/k.crt"},
		{dsn: "host=h sslkey=/k/d.key", env: map[string]string{"PGSSLKEY": "/env/k.key"}, key: "/k/d.key"},
		{dsn: "host=h sslkey=/k/e.key sslcertmode=disable"},
		{dsn: "postgres://u@h/db"},
	} {
		env = tc.env
		key, cert := postgresClientCertFiles(tc.dsn, getenv)
		if key != tc.key || cert != tc.cert {
			t.Errorf("%s (env %v): key %q, cert %q; want %q, %q", tc.dsn, tc.env, key, cert, tc.key, tc.cert)
		}
	}
}
