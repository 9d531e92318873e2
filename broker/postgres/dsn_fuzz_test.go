package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// FuzzCheckTransport checks arbitrary libpq connection strings (key=value
// and URL). One it accepts (without allowInsecureTransport) makes pgx
// reach every host of it that is not this machine over TLS with a checked
// server certificate, fallbacks included; a refusal is ErrInsecureTransport
// or a string pgx does not read, and never shows the password the string
// holds; nothing panics.
func FuzzCheckTransport(f *testing.F) {
	for _, s := range []string{
		"postgres://sqlgate:hunter2hunter2@db.example:5432/orders?sslmode=verify-full",
		"postgres://sqlgate:hunter2hunter2@db.example/orders?sslmode=require",
		"postgres://sqlgate@db.example/orders", "postgres://sqlgate@127.0.0.1/orders?sslmode=disable",
		"postgres://a@db1.example,db2.example/orders?sslmode=verify-ca", "postgres://a@localhost,db.example/x?sslmode=prefer",
		"host=db.example user=sqlgate password=hunter2hunter2 dbname=orders sslmode=verify-full",
		"host=/var/run/postgresql dbname=orders", "host=db.example sslmode=require sslrootcert=system",
		"host='db.example' password='hun ter2\\'s' sslmode=allow", "host=[::1] sslmode=disable", "postgres://%zz", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		err := CheckTransport(dsn, false)
		cc, perr := pgconn.ParseConfig(dsn)
		if err != nil {
			if perr == nil && len(cc.Password) >= 6 && strings.Contains(err.Error(), cc.Password) {
				t.Fatalf("CheckTransport error %q shows the password", err)
			}
			if perr == nil && !errors.Is(err, ErrInsecureTransport) {
				t.Fatalf("CheckTransport(%q): %v, for a string pgx reads", dsn, err)
			}
			if perr != nil && CheckTransport(dsn, true) == nil {
				t.Fatalf("allowInsecureTransport accepts %q, which pgx does not read", dsn)
			}
			return
		}
		if perr != nil {
			t.Fatalf("CheckTransport accepted %q, which pgx does not read: %v", dsn, perr)
		}
		targets := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
		for _, tg := range targets {
			if localHost(tg.Host) {
				continue
			}
			if c := tg.TLSConfig; c == nil || (c.InsecureSkipVerify && c.VerifyPeerCertificate == nil) || (!c.InsecureSkipVerify && c.ServerName == "") {
				t.Fatalf("CheckTransport accepted %q, which reaches %s:%d without a checked certificate", dsn, tg.Host, tg.Port)
			}
		}
	})
}
