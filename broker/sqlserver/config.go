package sqlserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/broker/internal/connref"
	"github.com/sqlgate/sqlgate/broker/route"
)

// Azure AD (Microsoft Entra ID) authentication modes, mapped to go-mssqldb
// azuread `fedauth` workflows.
const (
	// ModeManagedIdentity authenticates as the host's managed identity
	// (system-assigned, or user-assigned with ClientID or ResourceID).
	ModeManagedIdentity = "managedIdentity"
	// ModeServicePrincipal authenticates as an app registration with a
	// client secret (PasswordFile/PasswordEnv) or a certificate
	// (ClientCertPath).
	ModeServicePrincipal = "servicePrincipal"
	// ModeOnBehalfOf exchanges an end user's access token for a database
	// token, so calls run as that user; see [Executor.OnBehalfOf].
	ModeOnBehalfOf = "onBehalfOf"
	// ModeWorkloadIdentity uses a federated token file (Kubernetes workload
	// identity; AZURE_FEDERATED_TOKEN_FILE or TokenFilePath).
	ModeWorkloadIdentity = "workloadIdentity"
	// ModeDefault uses the Azure SDK's default credential chain.
	ModeDefault = "default"
)

var fedAuth = map[string]string{
	ModeManagedIdentity:  "ActiveDirectoryManagedIdentity",
	ModeServicePrincipal: "ActiveDirectoryServicePrincipal",
	ModeOnBehalfOf:       "ActiveDirectoryOnBehalfOf",
	ModeWorkloadIdentity: "ActiveDirectoryWorkloadIdentity",
	ModeDefault:          "ActiveDirectoryDefault",
}

// AzureAD selects Entra ID authentication through go-mssqldb's azuread
// driver instead of SQL authentication.
type AzureAD struct {
	// Mode is one of managedIdentity, servicePrincipal, onBehalfOf,
	// workloadIdentity, default.
	Mode string `json:"mode" yaml:"mode"`
	// ClientID is the application (client) id: the app registration for
	// servicePrincipal and onBehalfOf, a user-assigned identity for
	// managedIdentity (optional there).
	ClientID string `json:"clientID,omitempty" yaml:"clientID,omitempty"`
	// TenantID is the directory (tenant) id (servicePrincipal, onBehalfOf).
	TenantID string `json:"tenantID,omitempty" yaml:"tenantID,omitempty"`
	// ResourceID selects a user-assigned managed identity by resource id.
	ResourceID string `json:"resourceID,omitempty" yaml:"resourceID,omitempty"`
	// ClientCertPath is a PEM/PFX certificate file used instead of a client
	// secret (servicePrincipal, onBehalfOf).
	ClientCertPath string `json:"clientCertPath,omitempty" yaml:"clientCertPath,omitempty"`
	// TokenFilePath is the federated token file (workloadIdentity).
	TokenFilePath string `json:"tokenFilePath,omitempty" yaml:"tokenFilePath,omitempty"`
}

// Config configures an [Executor]. The connection string and any password
// or client secret are secrets and are referenced: DSNFile or DSNEnv, and
// PasswordFile or PasswordEnv; DSN inline is for tests and development.
//
// The DSN names the server, database and TLS settings, in go-mssqldb URL
// form (sqlserver://host:1433?database=orders&encrypt=strict) or ADO form
// (server=host;database=orders;encrypt=strict). With SQL authentication it
// also names the user; with AzureAD set, the adapter adds the fedauth
// parameters. It must require TLS with a checked server certificate
// (encrypt=strict or encrypt=true, TrustServerCertificate not true; see
// [CheckTransport]) unless AllowInsecureTransport is set.
type Config struct {
	// Name is the logical database name routes use (route `database:`).
	Name    string `json:"name" yaml:"name"`
	DSN     string `json:"dsn,omitempty" yaml:"dsn,omitempty"`
	DSNFile string `json:"dsnFile,omitempty" yaml:"dsnFile,omitempty"`
	DSNEnv  string `json:"dsnEnv,omitempty" yaml:"dsnEnv,omitempty"`
	// PasswordFile / PasswordEnv supply the SQL login's password or, with
	// AzureAD servicePrincipal/onBehalfOf, the client secret.
	PasswordFile string   `json:"passwordFile,omitempty" yaml:"passwordFile,omitempty"`
	PasswordEnv  string   `json:"passwordEnv,omitempty" yaml:"passwordEnv,omitempty"`
	AzureAD      *AzureAD `json:"azureAD,omitempty" yaml:"azureAD,omitempty"`
	// MaxConns sizes the pool (default 8 per CPU, at least 4, at most 32).
	MaxConns int `json:"maxConns,omitempty" yaml:"maxConns,omitempty"`
	// OnBehalfOfMaxConns sizes each per-user pool of [Executor.OnBehalfOf]
	// (default 2).
	OnBehalfOfMaxConns int `json:"onBehalfOfMaxConns,omitempty" yaml:"onBehalfOfMaxConns,omitempty"`
	// AppName is shown in sys.dm_exec_sessions.program_name (default
	// "sqlgated").
	AppName string `json:"appName,omitempty" yaml:"appName,omitempty"`
	// MaxRetries bounds how often a deadlocked call (1205) is retried
	// (default 3; negative disables).
	MaxRetries int `json:"maxRetries,omitempty" yaml:"maxRetries,omitempty"`
	// ConnMaxLifetime recycles connections (default 30m), so that token
	// based logins renew their tokens and failovers rebalance.
	ConnMaxLifetime time.Duration `json:"connMaxLifetime,omitempty" yaml:"connMaxLifetime,omitempty"`
	// AllowInsecureTransport accepts a DSN that does not require TLS with a
	// checked server certificate (no encrypt, encrypt=false or disable,
	// TrustServerCertificate=true): the login, password included, and every
	// call may then cross the network in clear text or to an impostor. For
	// a local test server only.
	AllowInsecureTransport bool `json:"allowInsecureTransport,omitempty" yaml:"allowInsecureTransport,omitempty"`
	// Logger receives retry and lifecycle messages (default: discard).
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// Validate reports every problem with the configuration at once. It does
// not read the referenced files or variables: an inline DSN's transport
// settings are checked here, a referenced one's when [Open] resolves it.
func (c *Config) Validate() error {
	var errs []error
	if !route.ValidIdentifier(c.Name) {
		errs = append(errs, fmt.Errorf("name %q must be a plain identifier", c.Name))
	}
	errs = append(errs, c.ref().Validate()...)
	if c.DSN != "" {
		// Judged as the driver will open it, with the adapter's
		// parameters added (see build); the password is not needed here.
		if _, _, err := c.build(c.DSN, "", "validation-only"); err != nil {
			errs = append(errs, fmt.Errorf("dsn: %w", err))
		}
	}
	if c.MaxConns < 0 || c.MaxConns > 1000 {
		errs = append(errs, fmt.Errorf("maxConns %d must be between 1 and 1000 (0: default)", c.MaxConns))
	}
	if c.OnBehalfOfMaxConns < 0 || c.OnBehalfOfMaxConns > 100 {
		errs = append(errs, fmt.Errorf("onBehalfOfMaxConns %d must be between 1 and 100 (0: default)", c.OnBehalfOfMaxConns))
	}
	if c.ConnMaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("connMaxLifetime %s must not be negative", c.ConnMaxLifetime))
	}
	if strings.ContainsAny(c.AppName, ";=\"'{}\x00") || len(c.AppName) > 128 {
		errs = append(errs, errors.New("appName must be at most 128 characters without ; = quotes braces or NUL"))
	}
	if a := c.AzureAD; a != nil {
		secret := c.PasswordFile != "" || c.PasswordEnv != ""
		switch a.Mode {
		case ModeManagedIdentity:
			if a.ClientID != "" && a.ResourceID != "" {
				errs = append(errs, errors.New("azureAD managedIdentity: set clientID or resourceID, not both"))
			}
		case ModeServicePrincipal, ModeOnBehalfOf:
			if a.ClientID == "" {
				errs = append(errs, fmt.Errorf("azureAD %s: clientID is required", a.Mode))
			}
			if a.TenantID == "" {
				errs = append(errs, fmt.Errorf("azureAD %s: tenantID is required", a.Mode))
			}
			if secret == (a.ClientCertPath != "") {
				errs = append(errs, fmt.Errorf("azureAD %s: exactly one of a client secret (passwordFile/passwordEnv) or clientCertPath is required", a.Mode))
			}
		case ModeWorkloadIdentity, ModeDefault:
		default:
			errs = append(errs, fmt.Errorf("azureAD mode %q must be one of managedIdentity, servicePrincipal, onBehalfOf, workloadIdentity, default", a.Mode))
		}
		for name, v := range map[string]string{"clientID": a.ClientID, "tenantID": a.TenantID, "resourceID": a.ResourceID, "clientCertPath": a.ClientCertPath, "tokenFilePath": a.TokenFilePath} {
			if strings.ContainsAny(v, ";\"\x00\r\n") {
				errs = append(errs, fmt.Errorf("azureAD %s must not contain ; quotes or control characters", name))
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Config) defaults() {
	if c.MaxConns == 0 {
		c.MaxConns = min(max(8*runtime.GOMAXPROCS(0), 4), 32)
	}
	if c.OnBehalfOfMaxConns == 0 {
		c.OnBehalfOfMaxConns = 2
	}
	if c.AppName == "" {
		c.AppName = "sqlgated"
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
	if c.ConnMaxLifetime == 0 {
		c.ConnMaxLifetime = 30 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ref is where the connection's secrets are.
func (c *Config) ref() connref.Ref {
	return connref.Ref{DSN: c.DSN, DSNFile: c.DSNFile, DSNEnv: c.DSNEnv, PasswordFile: c.PasswordFile, PasswordEnv: c.PasswordEnv}
}

// String describes the configuration without secrets.
func (c Config) String() string {
	src := c.ref().Source()
	auth := "sql authentication"
	if c.AzureAD != nil {
		auth = "azureAD " + c.AzureAD.Mode
	}
	return fmt.Sprintf("sqlserver database %s (%s, %s)", c.Name, src, auth)
}

// LogValue implements slog.LogValuer without secrets.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", c.Name), slog.Int("max_conns", c.MaxConns), c.ref().Attr()}
	if c.AzureAD != nil {
		attrs = append(attrs, slog.String("azure_ad_mode", c.AzureAD.Mode), slog.String("client_id", c.AzureAD.ClientID))
	}
	return slog.GroupValue(attrs...)
}

// connString resolves the secrets and returns the connection string the
// driver opens (see build). userAssertion is the end user's token
// (onBehalfOf).
func (c *Config) connString(userAssertion string) (dsn string, fed bool, err error) {
	dsn, password, err := c.ref().Resolve()
	if err != nil {
		return "", false, err
	}
	return c.build(dsn, password, userAssertion)
}

// build returns the connection string the driver opens: dsn with the
// application name, the password and the Azure AD parameters added, and
// go-mssqldb's `guid conversion` off. Its transport settings are checked
// ([CheckTransport]) on that string, not on dsn: rebuilding a string may
// change what the driver reads from it (a URL is rebuilt from what Go's URL
// parser kept).
func (c *Config) build(dsn, password, userAssertion string) (_ string, fed bool, err error) {
	set := map[string]string{
		"app name": c.AppName,
		// The adapter reads and writes a uniqueidentifier in SQL Server's
		// byte order itself (mssql.UniqueIdentifier); with the driver's
		// guid conversion on, every GUID sent or returned would be
		// reordered twice and name another row. Set last, it wins over
		// the DSN's in ADO form; withParams replaces it in a URL.
		"guid conversion": "false",
	}
	if password != "" {
		set["password"] = password
	}
	if a := c.AzureAD; a != nil {
		fed = true
		set["fedauth"] = fedAuth[a.Mode]
		user := a.ClientID
		if a.TenantID != "" && (a.Mode == ModeServicePrincipal || a.Mode == ModeOnBehalfOf) {
			user += "@" + a.TenantID
		}
		if user != "" {
			set["user id"] = user
		}
		if a.ResourceID != "" {
			set["resource id"] = a.ResourceID
		}
		if a.ClientCertPath != "" {
			set["clientcertpath"] = a.ClientCertPath
		}
		if a.TokenFilePath != "" {
			set["tokenfilepath"] = a.TokenFilePath
		}
		if a.Mode == ModeOnBehalfOf {
			set["userassertion"] = userAssertion
		}
	}
	if dsn, err = withParams(dsn, set); err != nil {
		return "", false, err
	}
	if err := CheckTransport(dsn, c.AllowInsecureTransport); err != nil {
		return "", false, err
	}
	return dsn, fed, nil
}

// withParams sets connection string parameters, in the DSN's own form (URL
// query parameters, or ADO key="value" pairs with quotes doubled). The form
// is told apart as go-mssqldb does: a URL starts with sqlserver:// in lower
// case, anything else but odbc: is ADO ([CheckTransport] refuses a string
// that looks like a URL but is not one to the driver).
func withParams(dsn string, set map[string]string) (string, error) {
	if strings.HasPrefix(dsn, urlScheme) {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("the connection string is not a valid URL")
		}
		q := u.Query()
		for k, v := range set {
			switch k {
			case "user id":
				pw, _ := u.User.Password()
				u.User = url.UserPassword(v, pw)
			case "password":
				u.User = url.UserPassword(u.User.Username(), v)
			default:
				// go-mssqldb reads keys case-insensitively and refuses
				// one given twice.
				for qk := range q {
					if strings.EqualFold(qk, k) {
						q.Del(qk)
					}
				}
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if strings.HasPrefix(strings.ToLower(dsn), "odbc:") {
		return "", errors.New("ODBC-form connection strings are not supported: use the URL or ADO form")
	}
	if unclosedQuote(dsn) {
		// The pairs added below would be read inside the quoted value,
		// and a password's own text as pairs.
		return "", errors.New("the connection string has an unclosed double quote")
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(dsn, "; "))
	for _, k := range sortedKeys(set) {
		b.WriteString(";")
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(strings.ReplaceAll(set[k], `"`, `""`))
		b.WriteString(`"`)
	}
	return b.String(), nil
}

// unclosedQuote reports whether an ADO string ends inside a double-quoted
// value, read as go-mssqldb splits it ("" inside quotes is a quote).
func unclosedQuote(dsn string) bool {
	in := false
	for i := 0; i < len(dsn); i++ {
		if dsn[i] != '"' {
			continue
		}
		if in && i+1 < len(dsn) && dsn[i+1] == '"' {
			i++
			continue
		}
		in = !in
	}
	return in
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
