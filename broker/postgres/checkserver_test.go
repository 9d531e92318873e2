package postgres_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/identity"
)

// TestLoginIssuerWarnsCreateRoleBefore16: on PostgreSQL 15 and earlier,
// where the CREATEROLE the issuer's role needs makes it a superuser of the
// cluster in effect, CheckServer logs a warning, once per issuer, and so
// does an issuer's first creation; neither refuses. On 16 or later
// nothing is logged.
func TestLoginIssuerWarnsCreateRoleBefore16(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, dsnFor(map[string]string{"pool_max_conns": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // registered first: the drops below run before it
	var version int
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	want := 0
	if version < 160000 {
		want = 1
	}
	const msg = "CREATEROLE makes the issuing role a superuser of the cluster"
	issuer := func() (*postgres.LoginIssuer, *bytes.Buffer) {
		var buf bytes.Buffer
		li, err := postgres.NewLoginIssuer(pool, postgres.LoginConfig{
			Name: "orders", LoginPrefix: "sg_cs_", Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return li, &buf
	}
	warnings := func(buf *bytes.Buffer) int {
		n := 0
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, msg) && strings.Contains(l, "server_version_num=") {
				n++
			}
		}
		return n
	}

	li, buf := issuer()
	for range 2 {
		if err := li.CheckServer(ctx); err != nil {
			t.Fatalf("CheckServer on server_version_num %d = %v, want nil (a warning, not a refusal)", version, err)
		}
	}
	if got := warnings(buf); got != want {
		t.Errorf("CheckServer twice on server_version_num %d logged %d warnings, want %d:\n%s", version, got, want, buf)
	}

	// Without CheckServer, the first creation warns.
	reader := testDB + "_cs_reader"
	if _, err := pool.Exec(ctx, "CREATE ROLE "+reader+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+reader) })
	li, buf = issuer()
	pw, err := broker.GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	who := identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}
	spec := broker.LoginSpec{
		LeaseID: "lease-cs", Username: broker.LoginName("sg_cs_", &who), Password: pw, Role: reader,
		ExpiresAt: time.Now().Add(time.Hour), Principal: who.Display(),
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{spec.Username}.Sanitize())
	})
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin on server_version_num %d: %v", version, err)
	}
	if err := li.RevokeLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := warnings(buf); got != want {
		t.Errorf("the first creation on server_version_num %d logged %d warnings, want %d:\n%s", version, got, want, buf)
	}
}
