package sqlserver

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/microsoft/go-mssqldb/msdsn"
)

// dsnSeeds are connection strings in the forms operators write.
var dsnSeeds = []string{
	"sqlserver://sqlgate@db.example:1433?database=orders&encrypt=strict",
	"sqlserver://sqlgate:old@db.example/inst?database=orders&encrypt=true&app+name=x",
	"sqlserver://db.example?database=orders;encrypt=strict",
	"server=db.example;user id=sqlgate;database=orders;encrypt=strict",
	`server=db.example;database="or;ders";password="a""b";encrypt=true;`,
	"server=db.example,1433;uid=sa;Database=orders;Encrypt=Strict;TrustServerCertificate=false ; ",
	`server=db.example;password="unclosed`,
	"SQLSERVER://db.example?encrypt=strict", "odbc:server=db.example", "", ";;=;",
}

// FuzzWithParams builds the connection string the driver opens from
// arbitrary operator connection strings and arbitrary secrets (a password
// or client secret from a file, the user of an Azure AD client). Whatever
// the secrets hold, the driver reads each exactly as given and nothing
// else changes: every other parameter of the string is as the operator
// wrote it, and none appears that was not there (a password such as
// `x";encrypt="disable` must not set encrypt). A string the driver reads
// stays one it reads.
func FuzzWithParams(f *testing.F) {
	for _, d := range dsnSeeds {
		f.Add(d, "s3cret", "app-client@tenant", "sqlgate")
		f.Add(d, `x";encrypt="disable`, `u;encrypt=false`, "a=b;c")
		f.Add(d, " lead and trail ", "", "")
		f.Add(d, `{}[]%&?#@:/\`, "ü", "\x00")
	}
	f.Fuzz(func(t *testing.T, dsn, password, user, app string) {
		set := map[string]string{"app name": app}
		if password != "" {
			set["password"] = password
		}
		if user != "" {
			set["user id"] = user
		}
		for _, v := range set {
			if !utf8.ValidString(v) {
				return // SQL Server takes UTF-16 text: such a secret cannot be sent as it is
			}
		}
		out, err := withParams(dsn, set)
		if err != nil {
			return
		}
		before, berr := msdsn.Parse(dsn)
		after, aerr := msdsn.Parse(out)
		if aerr != nil {
			if berr == nil {
				t.Fatalf("withParams(%q) = %q, which the driver no longer reads: %v", dsn, out, aerr)
			}
			return
		}
		if after.AppName != app || (password != "" && after.Password != password) || (user != "" && after.User != user) {
			t.Fatalf("withParams(%q, %q) = %q: the driver reads app %q, user %q, password %q", dsn, set, out, after.AppName, after.User, after.Password)
		}
		if berr != nil {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(after.Parameters)) {
			if _, isSet := set[k]; isSet {
				continue
			}
			v, was := before.Parameters[k]
			if !was && k == msdsn.UserID && after.Parameters[k] == "" {
				continue // a URL's password with no user: the user is "" as before
			}
			if !was || v != after.Parameters[k] {
				t.Fatalf("withParams(%q, %q) = %q: parameter %q is %q, was %q (present: %v)", dsn, set, out, k, after.Parameters[k], v, was)
			}
		}
		for k := range before.Parameters {
			if _, isSet := set[k]; !isSet {
				if _, kept := after.Parameters[k]; !kept {
					t.Fatalf("withParams(%q, %q) = %q dropped parameter %q", dsn, set, out, k)
				}
			}
		}
	})
}

// FuzzCheckTransport checks arbitrary connection strings. One it accepts
// (without allowInsecureTransport) is one the driver reads as requiring
// TLS with a checked server certificate; a refusal is ErrInsecureTransport
// or a string the driver does not read, and never shows the password the
// string holds; nothing panics.
func FuzzCheckTransport(f *testing.F) {
	for _, d := range dsnSeeds {
		f.Add(d + ";password=hunter2hunter2")
		f.Add(d)
	}
	f.Add("sqlserver://sa:hunter2hunter2@db.example?encrypt=strict&TrustServerCertificate=true")
	f.Add("sqlserver://sa:hunter2hunter2@db.example?encrypt=disable")
	f.Add("server=db.example;password=hunter2hunter2;encrypt=yes;hostnameincertificate=x")
	f.Fuzz(func(t *testing.T, dsn string) {
		err := CheckTransport(dsn, false)
		p, perr := msdsn.Parse(dsn)
		if err != nil {
			if perr == nil && len(p.Password) >= 6 && strings.Contains(err.Error(), p.Password) {
				t.Fatalf("CheckTransport error %q shows the password", err)
			}
			if perr == nil && !errors.Is(err, ErrInsecureTransport) && checkForm(dsn) == nil {
				t.Fatalf("CheckTransport(%q): %v, for a string the driver reads", dsn, err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("CheckTransport accepted %q, which the driver does not read: %v", dsn, perr)
		}
		if p.Encryption != msdsn.EncryptionRequired && p.Encryption != msdsn.EncryptionStrict || p.TrustServerCertificate ||
			p.TLSConfig == nil || p.TLSConfig.InsecureSkipVerify && p.TLSConfig.VerifyPeerCertificate == nil {
			t.Fatalf("CheckTransport accepted %q: encryption %d, trust server certificate %v, TLS %+v", dsn, p.Encryption, p.TrustServerCertificate, p.TLSConfig)
		}
		if err := CheckTransport(dsn, true); err != nil {
			t.Fatalf("allowInsecureTransport refuses %q: %v", dsn, err)
		}
	})
}
