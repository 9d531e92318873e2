package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/web"
)

// cuttingProxy forwards TCP connections to a database. Once armed, it cuts
// the first connection on which the database sends a record row (the bytes
// of a canonical record, `"kind":"`), right before those bytes: the
// control database going away in the middle of the record scan.
type cuttingProxy struct {
	armed atomic.Bool
	cuts  atomic.Int32
}

var recordRow = []byte(`"kind":"`)

func startCuttingProxy(t *testing.T, target string) (*cuttingProxy, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c, target) })
		}
	})
	return p, ln.Addr().String()
}

func (p *cuttingProxy) serve(c net.Conn, target string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	go func() {
		_, _ = io.Copy(u, c)
		u.Close()
	}()
	buf := make([]byte, 32<<10)
	var tail []byte // the last bytes sent, for a pattern split between reads
	for {
		n, err := u.Read(buf)
		chunk := buf[:n]
		if n > 0 && p.armed.Load() {
			seen := append(tail, chunk...)
			if i := bytes.Index(seen, recordRow); i >= 0 && p.armed.CompareAndSwap(true, false) {
				if upto := i - len(tail); upto > 0 {
					_, _ = c.Write(chunk[:upto])
				}
				p.cuts.Add(1)
				return // both sides closed by the defers
			}
			tail = append(tail[:0], seen[max(0, len(seen)-len(recordRow)+1):]...)
		}
		if n > 0 {
			if _, werr := c.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// auditorAuth signs every bearer token in as an auditor.
type auditorAuth struct{}

func (auditorAuth) Verify(context.Context, string) (identity.Principal, error) {
	return identity.Principal{Issuer: "https://idp.test", Subject: "carol", Groups: []string{"auditors"}}, nil
}

// TestDashboardAuditOutageMidRead: the PostgreSQL control database drops
// the connection while the dashboard's verification or evidence reads the
// records. That is an outage of the audit log, as docs/audit.md §5 says:
// 503 unavailable, the cause (pgx's error, which can name hosts and users)
// only in the sqlgated log. The verification answered 200 "did not
// verify … read records: unexpected EOF" (source_error taken for an
// integrity failure), and the evidence 500 with the pgx error.
func TestDashboardAuditOutageMidRead(t *testing.T) {
	admin := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	if admin == "" {
		t.Skip("SQLGATE_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped (set it to a server where the user may create databases)")
	}
	ctx := t.Context()
	base, err := pgconn.ParseConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dbName := "sqlgate_auditcut_" + hex.EncodeToString(b)
	ac, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = ac.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		_ = ac.Close(context.Background())
	})
	proxy, addr := startCuttingProxy(t, net.JoinHostPort(base.Host, fmt.Sprint(base.Port)))
	host, port, _ := net.SplitHostPort(addr)
	db, err := sql.Open("pgx", fmt.Sprintf("host=%s port=%s dbname=%s user=%s password='%s' sslmode=disable", host, port, dbName, base.User, base.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlstore.Open(ctx, db, sqlstore.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	const origin = "sqlgate.test/outage"
	clk := audittest.NewClock(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(t, origin)
	cfg.Now = clk.Now
	log, err := audit.Open(ctx, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	for _, corr := range []string{"c1", "c2", "c3"} {
		clk.Add(time.Minute)
		if _, err := log.Append(ctx, &audit.Record{Kind: audit.KindDecision, CorrelationID: corr, Reasons: []string{"denied"}}); err != nil {
			t.Fatal(err)
		}
		if err := log.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var logged bytes.Buffer
	srv, err := web.New(web.Config{
		Broker: noBroker{}, Auth: auditorAuth{}, AuditorGroups: []string{"auditors"},
		Audit:  &auditService{log: log, store: store, signer: cfg.Signer},
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer token")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	const verifyPath, evidencePath = "/api/v1/audit/verify", "/api/v1/audit/evidence?from=2026-04-01&to=2026-04-02"
	for _, path := range []string{verifyPath, evidencePath} {
		if rec := get(path); rec.Code != http.StatusOK {
			t.Fatalf("GET %s of the intact log = %d %s", path, rec.Code, rec.Body)
		}
	}
	for i, path := range []string{verifyPath, evidencePath} {
		logged.Reset()
		proxy.armed.Store(true)
		rec := get(path)
		if proxy.cuts.Load() != int32(i+1) {
			t.Fatalf("GET %s: the proxy did not cut the record scan", path)
		}
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "the audit log is unavailable") {
			t.Errorf("GET %s with the database gone mid-read = %d %s, want 503 unavailable", path, rec.Code, body)
		}
		for _, leak := range []string{"EOF", "read records", "did not verify", host, base.User} {
			if strings.Contains(body, leak) {
				t.Errorf("GET %s: the answer tells %q: %s", path, leak, body)
			}
		}
		if !strings.Contains(logged.String(), "read records") || !strings.Contains(logged.String(), "status=503") {
			t.Errorf("GET %s: the sqlgated log does not say why:\n%s", path, logged.String())
		}
	}
	if rec := get(verifyPath); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ok":true`) {
		t.Errorf("GET %s once the database is back = %d %s", verifyPath, rec.Code, rec.Body)
	}
}
