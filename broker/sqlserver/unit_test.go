package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-sql/civil"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

func TestBindValue(t *testing.T) {
	t.Parallel()
	uid, _ := func() (mssql.UniqueIdentifier, error) {
		var u mssql.UniqueIdentifier
		return u, u.Scan("0190E9A5-1234-7ABC-8DEF-0123456789AB")
	}()
	tests := []struct {
		name    string
		p       route.Param
		v       any
		want    any
		wantErr string
	}{
		{"string", route.Param{Type: "string"}, "héllo", mssql.NVarCharMax("héllo"), ""},
		{"integer", route.Param{Type: "integer"}, int64(1) << 40, int64(1) << 40, ""},
		{"int_declared", route.Param{Type: "integer", SQLType: "int"}, int64(7), int32(7), ""},
		{"int_overflow", route.Param{Type: "integer", SQLType: "int"}, int64(1) << 40, nil, "out of range for int"},
		{"smallint", route.Param{Type: "integer", SQLType: "smallint"}, int64(-5), int16(-5), ""},
		{"tinyint_negative", route.Param{Type: "integer", SQLType: "tinyint"}, int64(-1), nil, "out of range"},
		{"bit_from_integer", route.Param{Type: "integer", SQLType: "bit"}, int64(1), true, ""},
		{"decimal_exact", route.Param{Type: "number", SQLType: "decimal(38,10)"}, json.Number("12345678901234567890.0123456789"), mssql.NVarCharMax("12345678901234567890.0123456789"), ""},
		{"number_default_exact", route.Param{Type: "number"}, json.Number("0.1"), mssql.NVarCharMax("0.1"), ""},
		{"float_declared", route.Param{Type: "number", SQLType: "float"}, json.Number("0.5"), 0.5, ""},
		// SQL Server converts no exponent from text to decimal (8114):
		// exponent forms go out in plain notation, digit for digit.
		{"decimal_negative_exponent", route.Param{Type: "number", SQLType: "decimal(12,5)"}, json.Number("1e-05"), mssql.NVarCharMax("0.00001"), ""},
		{"decimal_positive_exponent", route.Param{Type: "number", SQLType: "numeric(38,0)"}, json.Number("1E+21"), mssql.NVarCharMax("1000000000000000000000"), ""},
		{"decimal_exponent_fraction", route.Param{Type: "number", SQLType: "decimal(12,2)"}, json.Number("-2.50E+1"), mssql.NVarCharMax("-25.0"), ""},
		{"decimal_exponent_point_inside", route.Param{Type: "number", SQLType: "decimal(12,4)"}, json.Number("123.456e-1"), mssql.NVarCharMax("12.3456"), ""},
		{"decimal_exponent_leading_zeros", route.Param{Type: "number"}, json.Number("0.0012e2"), mssql.NVarCharMax("0.12"), ""},
		{"decimal_exponent_zero", route.Param{Type: "number"}, json.Number("0.0e7"), mssql.NVarCharMax("0"), ""},
		{"decimal_exponent_beyond_bound", route.Param{Type: "number"}, json.Number("1e401"), nil, "exponent within ±400"},
		{"int_declared_exponent", route.Param{Type: "number", SQLType: "int"}, json.Number("1.5e3"), int32(1500), ""},
		{"int_declared_exponent_fraction", route.Param{Type: "number", SQLType: "int"}, json.Number("1.55e1"), nil, "must be an integer"},
		{"float_declared_exponent", route.Param{Type: "number", SQLType: "float"}, json.Number("1e-05"), 1e-05, ""},
		{"number_exponent_as_nvarchar_too_long", route.Param{Type: "number", SQLType: "nvarchar(5)"}, json.Number("1e5"), nil, "longer than the declared nvarchar(5)"},
		{"bool", route.Param{Type: "boolean"}, true, true, ""},
		{"uniqueidentifier", route.Param{Type: "string", SQLType: "uniqueidentifier"}, "0190e9a5-1234-7abc-8def-0123456789ab", uid, ""},
		{"uniqueidentifier_bad", route.Param{Type: "string", SQLType: "uniqueidentifier"}, "'; DROP TABLE x; --", nil, "must be a uniqueidentifier"},
		{
			"datetime2",
			route.Param{Type: "string", SQLType: "datetime2"},
			"2026-01-02T03:04:05.5+01:00",
			civil.DateTime{Date: civil.Date{Year: 2026, Month: 1, Day: 2}, Time: civil.Time{Hour: 2, Minute: 4, Second: 5, Nanosecond: 5e8}},
			"",
		},
		{"datetimeoffset", route.Param{Type: "string", SQLType: "datetimeoffset"}, "2026-01-02T03:04:05Z", mssql.DateTimeOffset(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), ""},
		{"date", route.Param{Type: "string", SQLType: "date"}, "2026-01-02", civil.Date{Year: 2026, Month: 1, Day: 2}, ""},
		{"date_bad", route.Param{Type: "string", SQLType: "date"}, "yesterday", nil, "must be a date"},
		{"varbinary", route.Param{Type: "string", SQLType: "varbinary(16)"}, "AAEC", []byte{0, 1, 2}, ""},
		{"varbinary_bad", route.Param{Type: "string", SQLType: "varbinary(16)"}, "!!", nil, "must be base64"},
		{"null_integer", route.Param{Type: "integer", Nullable: true}, nil, sql.NullInt64{}, ""},
		{"null_string", route.Param{Type: "string", Nullable: true}, nil, sql.NullString{}, ""},
		{"null_uniqueidentifier", route.Param{Type: "string", SQLType: "uniqueidentifier"}, nil, mssql.NullUniqueIdentifier{}, ""},
		{"null_varbinary", route.Param{Type: "string", SQLType: "varbinary(max)"}, nil, []byte(nil), ""},
		// Declared lengths: CAST(@x AS nvarchar(5)) and a procedure's
		// nvarchar(5) parameter would cut a longer value silently.
		{"nvarchar_fits", route.Param{Type: "string", SQLType: "nvarchar(5)"}, "héllo", mssql.NVarCharMax("héllo"), ""},
		{"nvarchar_too_long", route.Param{Type: "string", SQLType: "nvarchar(5)"}, "héllo!", nil, "longer than the declared nvarchar(5)"},
		{"nvarchar_surrogates", route.Param{Type: "string", SQLType: "NVARCHAR(5)"}, "abcd😀", nil, "longer than the declared nvarchar(5)"},
		{"nchar_too_long", route.Param{Type: "string", SQLType: "nchar(2)"}, "abc", nil, "longer than the declared nchar(2)"},
		{"varchar_too_long", route.Param{Type: "string", SQLType: "varchar(3)"}, "abcd", nil, "longer than the declared varchar(3)"},
		{"char_fits", route.Param{Type: "string", SQLType: "char(4)"}, "abcd", mssql.NVarCharMax("abcd"), ""},
		{"nvarchar_max", route.Param{Type: "string", SQLType: "nvarchar(max)"}, strings.Repeat("x", 5000), mssql.NVarCharMax(strings.Repeat("x", 5000)), ""},
		{"text_unbounded", route.Param{Type: "string", SQLType: "text"}, strings.Repeat("x", 5000), mssql.NVarCharMax(strings.Repeat("x", 5000)), ""},
		{"number_as_nvarchar_too_long", route.Param{Type: "number", SQLType: "nvarchar(5)"}, json.Number("123.456"), nil, "longer than the declared nvarchar(5)"},
		{"integer_as_varchar_too_long", route.Param{Type: "integer", SQLType: "varchar(5)"}, int64(-123456), nil, "longer than the declared varchar(5)"},
		{"integer_as_varchar_fits", route.Param{Type: "integer", SQLType: "varchar(5)"}, int64(-1234), int64(-1234), ""},
		{"varbinary_too_long", route.Param{Type: "string", SQLType: "varbinary(2)"}, "AAEC", nil, "longer than the declared varbinary(2)"},
		{"binary_fits", route.Param{Type: "string", SQLType: "binary(3)"}, "AAEC", []byte{0, 1, 2}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bindValue(&tc.p, "field", tc.v)
			if tc.wantErr != "" {
				var inv *route.InvalidError
				if !errors.As(err, &inv) || !strings.Contains(inv.Message, tc.wantErr) || inv.Field != "field" {
					t.Fatalf("bindValue(%v) error = %v, want InvalidError %q on field", tc.v, err, tc.wantErr)
				}
				if s, ok := tc.v.(string); ok && strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes the value", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("bindValue(%v) = %v", tc.v, err)
			}
			if fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", tc.want, tc.want) {
				t.Errorf("bindValue(%v) = %T %v, want %T %v", tc.v, got, got, tc.want, tc.want)
			}
		})
	}
}

func TestOutputValues(t *testing.T) {
	t.Parallel()
	dec := newOut(route.Param{Name: "total", SQLType: "decimal(12,2)"})
	*dec.dest.(*sql.NullString) = sql.NullString{String: "12.50", Valid: true}
	if got := dec.value("decimal(12,2)"); got != json.Number("12.50") {
		t.Errorf("decimal output = %#v, want json.Number 12.50", got)
	}
	id := newOut(route.Param{Name: "id", SQLType: "int"})
	if got := id.value("int"); got != nil {
		t.Errorf("unset int output = %#v, want nil (NULL)", got)
	}
	*id.dest.(*sql.NullInt64) = sql.NullInt64{Int64: 42, Valid: true}
	if got := id.value("int"); got != int64(42) {
		t.Errorf("int output = %#v, want 42", got)
	}
	// A string OUTPUT destination sends an empty string, which go-mssqldb
	// declares nvarchar(max) (a *sql.NullString is nvarchar(4000), cutting
	// longer values), and scans NULL and long values back.
	for _, typ := range []string{"nvarchar(max)", "nvarchar(20)", "varchar(max)", "text"} {
		st := newOut(route.Param{Name: "status", SQLType: typ})
		so, ok := st.dest.(*stringOut)
		if !ok {
			t.Fatalf("newOut(%s).dest = %T, want *stringOut", typ, st.dest)
		}
		if v, err := driver.Valuer(so).Value(); v != "" || err != nil {
			t.Errorf("newOut(%s) sends %#v, %v; want the empty string go-mssqldb declares nvarchar(max)", typ, v, err)
		}
		if err := so.Scan(nil); err != nil || st.value(typ) != nil {
			t.Errorf("%s output NULL = %#v, %v; want nil", typ, st.value(typ), err)
		}
		long := strings.Repeat("é", 5000)
		if err := so.Scan(long); err != nil || st.value(typ) != long {
			t.Errorf("%s output of 5000 characters = %d bytes, %v", typ, len(fmt.Sprint(st.value(typ))), err)
		}
	}
}

// An OUTPUT value reads as the same value in a result-set column.
func TestOutputValuesMatchColumns(t *testing.T) {
	t.Parallel()
	// uniqueidentifier in SQL Server's byte order, as the server sends both.
	wire := []byte{0xa5, 0xe9, 0x90, 0x01, 0x34, 0x12, 0xbc, 0x7a, 0x8d, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab}
	u := newOut(route.Param{Name: "u", SQLType: "uniqueidentifier"})
	if err := u.dest.(*mssql.NullUniqueIdentifier).Scan(wire); err != nil {
		t.Fatal(err)
	}
	if got, col := u.value("uniqueidentifier"), columnValue("UNIQUEIDENTIFIER", wire); got != col || got != "0190e9a5-1234-7abc-8def-0123456789ab" {
		t.Errorf("uniqueidentifier OUTPUT = %#v, column = %#v; want both 0190e9a5-1234-7abc-8def-0123456789ab", got, col)
	}
	// A time OUTPUT comes back as the datetimeoffset(7) its destination
	// is declared: 1900-01-01 10:30:00.25 +00:00; a TIME column as a time
	// of day.
	tm := newOut(route.Param{Name: "t", SQLType: "time(7)"})
	if err := tm.dest.(*sql.NullTime).Scan(time.Date(1900, 1, 1, 10, 30, 0, 25e7, time.FixedZone("", 0))); err != nil {
		t.Fatal(err)
	}
	if got, col := tm.value("time(7)"), columnValue("TIME", time.Date(1, 1, 1, 10, 30, 0, 25e7, time.UTC)); got != col || got != "10:30:00.25" {
		t.Errorf("time OUTPUT = %#v, column = %#v; want both \"10:30:00.25\"", got, col)
	}
	d := newOut(route.Param{Name: "d", SQLType: "date"})
	if err := d.dest.(*sql.NullTime).Scan(time.Date(2026, 1, 2, 0, 0, 0, 0, time.FixedZone("", 0))); err != nil {
		t.Fatal(err)
	}
	if got, col := d.value("date"), columnValue("DATE", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)); got != col || got != "2026-01-02" {
		t.Errorf("date OUTPUT = %#v, column = %#v; want both \"2026-01-02\"", got, col)
	}
}

func TestColumnValue(t *testing.T) {
	t.Parallel()
	// SQL Server sends a uniqueidentifier with its first three groups
	// little-endian.
	raw := []byte{0xa5, 0xe9, 0x90, 0x01, 0x34, 0x12, 0xbc, 0x7a, 0x8d, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab}
	tests := []struct {
		typ  string
		in   any
		want any
	}{
		{"DECIMAL", []byte("12.50"), json.Number("12.50")},
		{"MONEY", []byte("-3.1400"), json.Number("-3.1400")},
		{"UNIQUEIDENTIFIER", raw, "0190e9a5-1234-7abc-8def-0123456789ab"},
		{"DATE", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "2026-01-02"},
		{"NVARCHAR", "x'; --", "x'; --"},
		{"BIGINT", int64(5), int64(5)},
		{"INT", nil, nil},
	}
	for _, tc := range tests {
		if got := columnValue(tc.typ, tc.in); fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
			t.Errorf("columnValue(%s, %#v) = %#v, want %#v", tc.typ, tc.in, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"sql_auth", Config{Name: "orders", DSNEnv: "X"}, nil},
		{"nothing", Config{Name: "bad name"}, []string{"plain identifier", "exactly one of dsn"}},
		{"two_sources", Config{Name: "o", DSN: "x", DSNFile: "f"}, []string{"exactly one of dsn"}},
		{"mi_ok", Config{Name: "o", DSNEnv: "X", AzureAD: &AzureAD{Mode: ModeManagedIdentity}}, nil},
		{"mi_both_ids", Config{Name: "o", DSNEnv: "X", AzureAD: &AzureAD{Mode: ModeManagedIdentity, ClientID: "a", ResourceID: "b"}}, []string{"clientID or resourceID"}},
		{"sp_missing", Config{Name: "o", DSNEnv: "X", AzureAD: &AzureAD{Mode: ModeServicePrincipal}}, []string{"clientID is required", "tenantID is required", "exactly one of a client secret"}},
		{"sp_secret_and_cert", Config{Name: "o", DSNEnv: "X", PasswordEnv: "S", AzureAD: &AzureAD{Mode: ModeServicePrincipal, ClientID: "a", TenantID: "t", ClientCertPath: "c.pem"}}, []string{"exactly one of a client secret"}},
		{"obo_ok", Config{Name: "o", DSNEnv: "X", PasswordFile: "s", AzureAD: &AzureAD{Mode: ModeOnBehalfOf, ClientID: "a", TenantID: "t"}}, nil},
		{"unknown_mode", Config{Name: "o", DSNEnv: "X", AzureAD: &AzureAD{Mode: "ActiveDirectoryPassword"}}, []string{"mode"}},
		{"injection_client_id", Config{Name: "o", DSNEnv: "X", AzureAD: &AzureAD{Mode: ModeManagedIdentity, ClientID: `a";password="x`}}, []string{"clientID must not contain"}},
		{"limits", Config{Name: "o", DSNEnv: "X", MaxConns: -1, ConnMaxLifetime: -1, AppName: "a;b"}, []string{"maxConns", "connMaxLifetime", "appName"}},
		// An inline DSN's transport is checked at once (a referenced one
		// when Open reads it).
		{"inline_dsn_without_encrypt", Config{Name: "o", DSN: "sqlserver://u:hunter2@db?database=orders"}, []string{"dsn: the connection string does not require TLS", "does not set encrypt", "allowInsecureTransport: true"}},
		{"inline_dsn_trusting", Config{Name: "o", DSN: "server=db;encrypt=true;TrustServerCertificate=true"}, []string{"dsn: the connection string does not require TLS", "TrustServerCertificate=true accepts any server certificate"}},
		{"inline_dsn_strict", Config{Name: "o", DSN: "sqlserver://u:hunter2@db?database=orders&encrypt=strict"}, nil},
		{"inline_dsn_insecure_allowed", Config{Name: "o", DSN: "server=db;encrypt=disable", AllowInsecureTransport: true}, nil},
		// ADO to go-mssqldb (the URL form is lower-case sqlserver:// only),
		// where encrypt=strict is a pair of its own: read as a URL it
		// lost that pair and connected without TLS.
		{"inline_dsn_uppercase_scheme", Config{Name: "o", DSN: "SQLSERVER://broker@db.example.com:1433?app=1;encrypt=strict;"}, []string{"dsn: the connection string must start with sqlserver:// exactly"}},
		{"inline_dsn_uppercase_scheme_insecure_allowed", Config{Name: "o", DSN: "SQLSERVER://broker@db.example.com:1433?app=1;encrypt=strict;", AllowInsecureTransport: true}, []string{"must start with sqlserver:// exactly"}},
		{"inline_dsn_unclosed_quote", Config{Name: "o", DSN: `server=db;encrypt=strict;workstation id="`}, []string{"dsn: the connection string has an unclosed double quote"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Validate() = %v, quotes the connection string", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestConnString(t *testing.T) {
	t.Setenv("SQLGATE_TEST_SECRET", `s3cr"et;x`)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{
			"ado_sql_auth",
			Config{DSN: "server=db.example.com;database=orders;user id=sqlgate;encrypt=strict", PasswordEnv: "SQLGATE_TEST_SECRET"},
			`server=db.example.com;database=orders;user id=sqlgate;encrypt=strict;app name="sqlgated";guid conversion="false";password="s3cr""et;x"`,
		},
		{
			"url_sql_auth",
			Config{DSN: "sqlserver://sqlgate@db.example.com:1433?database=orders&encrypt=strict", PasswordEnv: "SQLGATE_TEST_SECRET"},
			`sqlserver://sqlgate:s3cr%22et;x@db.example.com:1433?app+name=sqlgated&database=orders&encrypt=strict&guid+conversion=false`,
		},
		{
			"managed_identity",
			Config{DSN: "server=x.database.windows.net;database=orders;encrypt=strict", AzureAD: &AzureAD{Mode: ModeManagedIdentity, ClientID: "11111111-2222-3333-4444-555555555555"}},
			`server=x.database.windows.net;database=orders;encrypt=strict;app name="sqlgated";fedauth="ActiveDirectoryManagedIdentity";guid conversion="false";user id="11111111-2222-3333-4444-555555555555"`,
		},
		{
			"service_principal",
			Config{DSN: "server=x.database.windows.net;database=orders;encrypt=true", PasswordEnv: "SQLGATE_TEST_SECRET", AzureAD: &AzureAD{Mode: ModeServicePrincipal, ClientID: "app", TenantID: "tenant"}},
			`server=x.database.windows.net;database=orders;encrypt=true;app name="sqlgated";fedauth="ActiveDirectoryServicePrincipal";guid conversion="false";password="s3cr""et;x";user id="app@tenant"`,
		},
		{
			"on_behalf_of",
			Config{DSN: "server=x.database.windows.net;database=orders;encrypt=strict", AzureAD: &AzureAD{Mode: ModeOnBehalfOf, ClientID: "app", TenantID: "tenant", ClientCertPath: "/etc/sqlgate/app.pem"}},
			`server=x.database.windows.net;database=orders;encrypt=strict;app name="sqlgated";clientcertpath="/etc/sqlgate/app.pem";fedauth="ActiveDirectoryOnBehalfOf";guid conversion="false";user id="app@tenant";userassertion="user-token"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = "orders"
			tc.cfg.defaults()
			got, _, err := tc.cfg.connString("user-token")
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("connString() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	// The transport is judged on the string the driver opens. An
	// upper-case scheme is ADO to go-mssqldb; read as a URL (url.Parse
	// drops pairs holding ;) it became sqlserver://...?app+name=sqlgated,
	// without encrypt. A password cannot add pairs after an unclosed quote.
	t.Setenv("SQLGATE_TEST_UPPER", "SQLSERVER://broker@db.example.com:1433?app=1;encrypt=strict;")
	t.Setenv("SQLGATE_TEST_QUOTE", `server=db.example.com;encrypt=strict;workstation id="`)
	t.Setenv("SQLGATE_TEST_PAIRS", ";encrypt=disable;")
	for _, cfg := range []Config{
		{Name: "o", DSNEnv: "SQLGATE_TEST_UPPER"},
		{Name: "o", DSNEnv: "SQLGATE_TEST_UPPER", AllowInsecureTransport: true},
		{Name: "o", DSNEnv: "SQLGATE_TEST_QUOTE", PasswordEnv: "SQLGATE_TEST_PAIRS"},
	} {
		cfg.defaults()
		if got, _, err := cfg.connString(""); err == nil {
			t.Errorf("connString(%s) = %q, want refused", os.Getenv(cfg.DSNEnv), got)
		}
	}
	// A key the adapter sets replaces the DSN's in any case: go-mssqldb
	// refuses a key given twice.
	mixed := Config{Name: "o", DSN: "sqlserver://sqlgate@db.example.com?encrypt=strict&App+Name=mine"}
	mixed.defaults()
	if got, _, err := mixed.connString(""); err != nil || got != "sqlserver://sqlgate@db.example.com?app+name=sqlgated&encrypt=strict&guid+conversion=false" {
		t.Errorf("connString(App Name in the URL) = %q, %v; want one app name", got, err)
	}
	bad := Config{Name: "o", DSN: "server=x;encrypt=maybe;password=hunter2"}
	_, _, err := bad.connString("")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("connString(invalid) = %v, want an error that does not quote the DSN", err)
	}
	// A referenced DSN is checked when it is read: without encrypt it is
	// refused unless allowInsecureTransport says otherwise.
	t.Setenv("SQLGATE_TEST_DSN", "server=db.example.com;user id=sqlgate")
	ref := Config{Name: "o", DSNEnv: "SQLGATE_TEST_DSN", PasswordEnv: "SQLGATE_TEST_SECRET"}
	if _, _, err := ref.connString(""); !errors.Is(err, ErrInsecureTransport) || strings.Contains(err.Error(), "s3cr") {
		t.Errorf("connString(DSN without encrypt) = %v, want ErrInsecureTransport", err)
	}
	ref.AllowInsecureTransport = true
	if _, _, err := ref.connString(""); err != nil {
		t.Errorf("connString(DSN without encrypt, allowInsecureTransport) = %v", err)
	}
}

func TestConfigRedaction(t *testing.T) {
	t.Parallel()
	cfg := Config{Name: "orders", DSN: "server=x;password=hunter2", AzureAD: &AzureAD{Mode: ModeManagedIdentity}}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "db", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), b.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q reveals the password", s)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	e := &Executor{cfg: Config{Name: "orders"}}
	c := &broker.Call{Route: &route.Route{}, Params: map[string]any{"email": "bob@example.com"}}
	ctx := context.Background()
	tests := []struct {
		name      string
		err       error
		unavail   bool
		dbNumber  int
		retryable bool
	}{
		{"check_violation", mssql.Error{Number: 547, State: 0, Message: `The INSERT statement conflicted with the CHECK constraint "orders_amount_check".`}, false, 547, false},
		{"unique_with_value", mssql.Error{Number: 2627, State: 1, Message: `Violation of PRIMARY KEY constraint 'pk'. The duplicate key value is (bob@example.com).`}, false, 2627, false},
		{"deadlock", mssql.Error{Number: 1205, State: 51, Message: "Transaction (Process ID 52) was deadlocked"}, false, 1205, true},
		{"login_failed", mssql.Error{Number: 18456, Message: "Login failed for user 'sqlgate'."}, true, 0, false},
		{"azure_unavailable", mssql.Error{Number: 40613, Message: "Database 'orders' on server 'x' is not currently available."}, true, 0, false},
		{"bad_conn", fmt.Errorf("read: %w", &net.OpError{Op: "read", Err: errors.New("connection reset")}), true, 0, false},
		{"conflict_passes", broker.ErrConflict, false, 0, false},
		{"cause_before_266", mssql.Error{Number: 266, Message: "Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT statements.", All: []mssql.Error{
			{Number: 547, Message: `The INSERT statement conflicted with the CHECK constraint "ck".`}, {Number: 266, Message: "Transaction count after EXECUTE"},
		}}, false, 547, false},
		{"deadlock_before_266", mssql.Error{Number: 266, All: []mssql.Error{{Number: 1205, Message: "deadlocked"}, {Number: 266}}}, false, 1205, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e.classify(ctx, tc.err, c)
			if errors.Is(got, broker.ErrUnavailable) != tc.unavail {
				t.Errorf("classify(%v) = %v, unavailable %v want %v", tc.err, got, !tc.unavail, tc.unavail)
			}
			var dbe *broker.DBError
			if tc.dbNumber != 0 && (!errors.As(got, &dbe) || dbe.Number != tc.dbNumber) {
				t.Errorf("classify(%v) = %v, want DBError %d", tc.err, got, tc.dbNumber)
			}
			if strings.Contains(got.Error(), "bob@example.com") {
				t.Errorf("classify(%v) = %v, leaks a parameter value", tc.err, got)
			}
			if retryable(tc.err) != tc.retryable {
				t.Errorf("retryable(%v) = %v, want %v", tc.err, !tc.retryable, tc.retryable)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if got := e.classify(cctx, errors.New("whatever"), c); !errors.Is(got, broker.ErrUnavailable) || !errors.Is(got, context.Canceled) {
		t.Errorf("classify(cancelled ctx) = %v, want ErrUnavailable wrapping context.Canceled", got)
	}
}

// A server that is not there: Open fails as unavailable without quoting
// the connection string.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = Open(ctx, Config{Name: "orders", DSN: fmt.Sprintf("sqlserver://sqlgate:hunter2@127.0.0.1:%d?database=orders&dial+timeout=3&encrypt=true", port)})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Open(unreachable) = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q leaks the password", err)
	}
}

func TestOnBehalfOfNeedsAUser(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secret, []byte("not-used"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := Open(t.Context(), Config{
		Name: "orders", DSN: "server=x.database.windows.net;database=orders;encrypt=strict", PasswordFile: secret,
		AzureAD: &AzureAD{Mode: ModeOnBehalfOf, ClientID: "app", TenantID: "t"},
	})
	if err != nil {
		t.Fatalf("Open(onBehalfOf) = %v, want the base executor", err)
	}
	if _, err = e.Execute(t.Context(), &broker.Call{Route: &route.Route{}}); err == nil {
		t.Fatal("an on-behalf-of executor ran a call without a user token")
	}
	if _, err := e.OnBehalfOf(t.Context(), ""); err == nil {
		t.Fatal("OnBehalfOf without the user's token succeeded")
	}
}

// Messages that quote data lose the quoted part whatever it holds: 2628
// quotes the value cut to the column's length, which no parameter equals.
func TestClassifyQuotedData(t *testing.T) {
	t.Parallel()
	e := &Executor{cfg: Config{Name: "orders"}}
	c := &broker.Call{Route: &route.Route{}, Principal: "alice@example.com", Params: map[string]any{
		"customer": "Mallory Secret-Customer-Name Ltd", "email": "Bob@Example.com", "n": int64(300),
	}}
	tests := []struct {
		name   string
		number int32
		msg    string
		want   string
	}{
		{
			"truncated_2628", 2628,
			`String or binary data would be truncated in table 'orders.sales.orders', column 'customer'. Truncated value: 'Mallory Secret-Custo'.`,
			`String or binary data would be truncated in table 'orders.sales.orders', column 'customer'. Truncated value: [redacted].`,
		},
		{
			"truncated_quote_in_value", 2628,
			`String or binary data would be truncated in table 't', column 'c'. Truncated value: 'it''s a '', value: 'x'.`,
			`String or binary data would be truncated in table 't', column 'c'. Truncated value: [redacted].`,
		},
		{"truncated_8152", 8152, `String or binary data would be truncated.`, `String or binary data would be truncated.`},
		{
			"duplicate_key_2627", 2627,
			`Violation of UNIQUE KEY constraint 'uq_email'. Cannot insert duplicate key in object 'sales.customers'. The duplicate key value is (bob@example.com, Mallory Secret).`,
			`Violation of UNIQUE KEY constraint 'uq_email'. Cannot insert duplicate key in object 'sales.customers'. The duplicate key value is ([redacted]).`,
		},
		{
			"duplicate_key_2601", 2601,
			`Cannot insert duplicate key row in object 'sales.customers' with unique index 'ix_email'. The duplicate key value is (bob@example.com).`,
			`Cannot insert duplicate key row in object 'sales.customers' with unique index 'ix_email'. The duplicate key value is ([redacted]).`,
		},
		{
			"conversion_245", 245,
			`Conversion failed when converting the nvarchar value 'Mallory Secret-Custo' to data type int.`,
			`Conversion failed when converting the nvarchar value [redacted] to data type int.`,
		},
		{"conversion_8114", 8114, `Error converting data type nvarchar to bigint.`, `Error converting data type nvarchar to bigint.`},
		{
			"overflow_248", 248,
			`The conversion of the nvarchar value '99999999999' overflowed an int column.`,
			`The conversion of the nvarchar value [redacted] overflowed an int column.`,
		},
		{"overflow_220", 220, `Arithmetic overflow error for data type tinyint, value = 600.`, `Arithmetic overflow error for data type tinyint, value = [redacted].`},
		{
			"translated_withheld", 2628,
			`Die Zeichenfolge oder die binären Daten würden in der Tabelle 't', Spalte 'c' abgeschnitten. Abgeschnittener Wert: 'Mallory Secret-Custo'.`,
			`server error 2628: message withheld, it quotes data`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e.classify(t.Context(), mssql.Error{Number: tc.number, State: 1, Message: tc.msg}, c)
			var dbe *broker.DBError
			if !errors.As(got, &dbe) || dbe.Number != int(tc.number) {
				t.Fatalf("classify(%d) = %v, want DBError %d", tc.number, got, tc.number)
			}
			if dbe.Message != tc.want {
				t.Errorf("classify(%q).Message =\n%q\nwant\n%q", tc.msg, dbe.Message, tc.want)
			}
		})
	}
}

// A record the call finds taken is replayed: the stored result, or none
// for a record a procedure committed with the call's transaction (no retry
// may run such a call again); ErrConflict for another request.
func TestReplay(t *testing.T) {
	t.Parallel()
	e := &Executor{cfg: Config{Name: "orders"}}
	c := &broker.Call{Route: &route.Route{}, RequestHash: "h1"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	finished := status{
		txid: 7, hash: sql.NullString{String: "h1", Valid: true}, result: sql.NullString{String: `{"rows":[]}`, Valid: true},
		rows: sql.NullInt64{Valid: true}, affected: sql.NullInt64{Int64: 1, Valid: true}, committed: sql.NullTime{Time: at, Valid: true},
	}
	unfinished := finished
	unfinished.result, unfinished.rows, unfinished.affected, unfinished.committed = sql.NullString{}, sql.NullInt64{}, sql.NullInt64{}, sql.NullTime{}
	otherHash := finished
	otherHash.hash.String = "h2"
	unfinishedOtherHash := unfinished
	unfinishedOtherHash.hash.String = "h2"

	res, err := e.replay(&finished, c)
	if err != nil || !res.Replayed || string(res.JSON) != `{"rows":[]}` || res.TransactionID != "7" || !res.CommittedAt.Equal(at) || res.RowsAffected != 1 {
		t.Errorf("replay(finished) = %+v, %v; want the stored result", res, err)
	}
	// Committed by the routed procedure, without a result: replayed as
	// such (JSON null, no commit time), never run again.
	if res, err := e.replay(&unfinished, c); err != nil || !res.Replayed || !res.WithoutResult || res.JSON != nil || !res.CommittedAt.IsZero() || res.TransactionID != "7" {
		t.Errorf("replay(unfinished) = %+v, %v; want a replay without a result", res, err)
	}
	if res, err := e.replay(&unfinishedOtherHash, c); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("replay(unfinished, other request) = %+v, %v; want ErrConflict", res, err)
	}
	if res, err := e.replay(&otherHash, c); !errors.Is(err, broker.ErrConflict) {
		t.Errorf("replay(other request) = %+v, %v; want ErrConflict", res, err)
	}
}
