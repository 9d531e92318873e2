package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/broker/sqlserver"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/internal/secretfile"
	"github.com/sqlgate/sqlgate/internal/yamlstrict"
)

// Config is the file `sqlgated serve --config FILE` reads (YAML, camelCase
// keys, unknown keys rejected). It composes each package's own
// configuration; secrets are referenced by file or environment variable,
// never inlined. docs/operations.md ("Configuration reference") documents
// every key.
type Config struct {
	// Instance names this sqlgated process in audit records and NATS
	// (default: the host name).
	Instance string `yaml:"instance"`
	// Routes is the route catalog file.
	Routes      string            `yaml:"routes"`
	HTTP        HTTPConfig        `yaml:"http"`
	NATS        NATSConfig        `yaml:"nats"`
	Identity    IdentityConfig    `yaml:"identity"`
	Policy      PolicyConfig      `yaml:"policy"`
	Databases   []DatabaseConfig  `yaml:"databases"`
	Control     ControlConfig     `yaml:"control"`
	Audit       AuditConfig       `yaml:"audit"`
	Credentials CredentialsConfig `yaml:"credentials"`

	// originConflict records that both audit.origin and audit.originPrefix
	// were set (defaults fills in the origin, Validate reports it).
	originConflict bool
}

// defaultOriginPrefix starts the default audit origin.
const defaultOriginPrefix = "sqlgate"

// HTTPConfig configures the API and dashboard listener.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// MetricsListen, when set (e.g. ":9090"), serves /metrics on this
	// address only, not on Listen. Unset: /metrics is served on Listen,
	// without authentication, and names every route called with its counts.
	MetricsListen string `yaml:"metricsListen"`
	// PublicURL is how clients reach the API (used for the dashboard's
	// OIDC redirect URL).
	PublicURL string `yaml:"publicURL"`
	// TLSCertFile and TLSKeyFile enable HTTPS (cookies become Secure).
	TLSCertFile string `yaml:"tlsCertFile"`
	TLSKeyFile  string `yaml:"tlsKeyFile"`
	// AllowPlaintext accepts an http:// publicURL on a host other than
	// loopback with the dashboard's sign-in on: browsers then sign in over
	// plain HTTP, the cookies are not Secure, and they and the OIDC code
	// cross the network in the clear (serve warns at start). Only on a
	// network you trust; behind a proxy that ends TLS, publicURL is the
	// proxy's https:// address and this is not needed.
	AllowPlaintext bool     `yaml:"allowPlaintext"`
	AdminGroups    []string `yaml:"adminGroups"`
	AuditorGroups  []string `yaml:"auditorGroups"`
	// MaxConnections bounds the connections the API and dashboard's
	// listener keeps open at once (0: half the process's file descriptor
	// limit); past it new connections wait until one closes.
	MaxConnections int `yaml:"maxConnections"`
	// ShutdownDelay is how long the API and dashboard keep serving once a
	// stop begins, /readyz answering 503 (0, the default: they stop at
	// once), so that load balancers stop sending new connections first: on
	// Kubernetes the pod leaves its Service's endpoints while it is sent
	// SIGTERM. At most maxShutdownDelay.
	ShutdownDelay time.Duration `yaml:"shutdownDelay"`
}

// maxShutdownDelay bounds http.shutdownDelay: Kubernetes' endpoints and the
// load balancers in front take seconds to follow a pod that stops.
const maxShutdownDelay = time.Minute

// NATSConfig configures the connection to the NATS cluster.
type NATSConfig struct {
	// URL is where sqlgated connects; AdvertiseURL what clients are told
	// (default URL).
	URL          string `yaml:"url"`
	AdvertiseURL string `yaml:"advertiseURL"`
	// KeysDir holds the seeds written by `sqlgated nats-setup`; seeds may
	// instead come from SQLGATE_NATS_* environment variables.
	KeysDir string `yaml:"keysDir"`
	// Callout answers the auth callout for clients that hold only an OIDC
	// token (default true).
	Callout *bool `yaml:"callout"`
	// Workers and QueueLen size the request worker pool.
	Workers  int `yaml:"workers"`
	QueueLen int `yaml:"queueLen"`
	// AsyncMaxAge is how long a queued async request that meets an
	// unavailable database or audit log is retried, from when the stream
	// stored it (0: natsvc.DefaultAsyncMaxAge, 24h).
	AsyncMaxAge time.Duration `yaml:"asyncMaxAge"`
	// AsyncReplicas is how many NATS servers keep the async stream, 1 to 5
	// (0: 1 on a single server, 3 in a cluster; natsvc.AsyncConfig.Replicas).
	AsyncReplicas int `yaml:"asyncReplicas"`
	// CAFile holds the PEM certificates sqlgated trusts for a tls:// NATS
	// server (default: the system's roots).
	CAFile string `yaml:"caFile"`
	// AllowPlaintext accepts nats:// (or ws://) URLs to hosts other than
	// loopback: OIDC access tokens and credentials would cross the network
	// in the clear.
	AllowPlaintext bool `yaml:"allowPlaintext"`
}

// IdentityConfig configures token verification and sign-in.
type IdentityConfig struct {
	oidc.Config `yaml:",inline"`
	// CLI is what `sqlgate login` is told (GET /api/v1/config).
	CLI CLIConfig `yaml:"cli"`
	// Web enables the dashboard's sign-in.
	Web *WebLoginConfig `yaml:"web"`
}

// CLIConfig is the public client the CLI signs in with.
type CLIConfig struct {
	Issuer   string   `yaml:"issuer"`
	ClientID string   `yaml:"clientID"`
	Audience string   `yaml:"audience"`
	Scopes   []string `yaml:"scopes"`
	// ServiceScopes are what `sqlgate login --client-credentials` requests
	// (default: oidc.DefaultServiceScopes of Scopes, e.g. Entra's
	// api://<app>/.default for api://<app>/access).
	ServiceScopes []string `yaml:"serviceScopes"`
}

// WebLoginConfig configures the dashboard's confidential client.
type WebLoginConfig struct {
	// Issuer names an entry of identity.issuers.
	Issuer           string   `yaml:"issuer"`
	ClientID         string   `yaml:"clientID"`
	ClientSecretFile string   `yaml:"clientSecretFile"`
	ClientSecretEnv  string   `yaml:"clientSecretEnv"`
	Scopes           []string `yaml:"scopes"`
	// CookieKeyFile holds at least 32 random bytes that protect the login
	// cookie.
	CookieKeyFile string `yaml:"cookieKeyFile"`
}

// PolicyConfig configures the Rego engine.
type PolicyConfig struct {
	Dir         string        `yaml:"dir"`
	Watch       *bool         `yaml:"watch"`
	EvalTimeout time.Duration `yaml:"evalTimeout"`
}

// DatabaseConfig is one target database: exactly one of the dialects, and
// optionally short-lived SQL logins on it (PostgreSQL or SQL Server).
type DatabaseConfig struct {
	SQLite    *sqlite.Config    `yaml:"sqlite"`
	Postgres  *postgres.Config  `yaml:"postgres"`
	SQLServer *sqlserver.Config `yaml:"sqlserver"`
	// PostgresLogins and SQLServerLogins enable `sqlgate creds sql` on this
	// database (docs/credentials.md); their name defaults to the database's.
	PostgresLogins  *postgres.LoginConfig  `yaml:"postgresLogins"`
	SQLServerLogins *sqlserver.LoginConfig `yaml:"sqlserverLogins"`
	// IdempotencyRetention is how long idempotency records are kept (unset:
	// 168h; 0: forever). A retry with a key older than this executes again.
	IdempotencyRetention *time.Duration `yaml:"idempotencyRetention"`
}

// defaultIdempotencyRetention and minIdempotencyRetention bound how long
// idempotency records are kept.
const (
	defaultIdempotencyRetention = 7 * 24 * time.Hour
	minIdempotencyRetention     = 24 * time.Hour
)

// idempotencyRetention returns the configured retention (0: keep forever).
// A SQL Server database reached on behalf of each user has no login of
// sqlgate's own to prune with, so by default it keeps its records.
func (d DatabaseConfig) idempotencyRetention() time.Duration {
	switch {
	case d.IdempotencyRetention != nil:
		return *d.IdempotencyRetention
	case d.onBehalfOf():
		return 0
	}
	return defaultIdempotencyRetention
}

// onBehalfOf reports a SQL Server database whose calls run as each user.
func (d DatabaseConfig) onBehalfOf() bool {
	return d.SQLServer != nil && d.SQLServer.AzureAD != nil && d.SQLServer.AzureAD.Mode == sqlserver.ModeOnBehalfOf
}

// ControlConfig is the control database (audit log, registry, leases).
type ControlConfig struct {
	// Dialect is sqlite, postgres or sqlserver.
	Dialect string `yaml:"dialect"`
	// Path is the SQLite file.
	Path string `yaml:"path"`
	// DSNFile or DSNEnv reference the connection string of PostgreSQL or
	// SQL Server.
	DSNFile string `yaml:"dsnFile"`
	DSNEnv  string `yaml:"dsnEnv"`
	// AllowInsecureTransport accepts a PostgreSQL or SQL Server connection
	// string that does not require TLS with a checked server certificate
	// (postgres.CheckTransport: sslmode verify-full or verify-ca for a host
	// other than this machine; sqlserver.CheckTransport): the login, the
	// audit log and the decision inputs may then cross the network in
	// clear text or reach an impostor. For a test server only.
	AllowInsecureTransport bool `yaml:"allowInsecureTransport"`
}

// checkTransport refuses a control database connection string that would
// let the login, the audit log and the decision inputs cross the network
// in clear text or reach an impostor, unless AllowInsecureTransport says
// so. No error quotes the string.
func (c ControlConfig) checkTransport(dsn string) error {
	var err error
	switch c.Dialect {
	case "postgres":
		err = postgres.CheckTransport(dsn, c.AllowInsecureTransport)
	case "sqlserver":
		err = sqlserver.CheckTransport(dsn, c.AllowInsecureTransport)
	}
	if err != nil {
		return fmt.Errorf("control database DSN: %w", err)
	}
	return nil
}

// checkReferencedTransport is checkTransport for serve --check, on the
// connection string as serve will read it (control.dsnFile or dsnEnv): one
// that does not require TLS, or does not parse (a CA file it names that is
// not there), would stop serve. A string it cannot read is left to
// checkFiles, which reports it.
func (c ControlConfig) checkReferencedTransport() error {
	if c.Dialect != "postgres" && c.Dialect != "sqlserver" {
		return nil
	}
	dsn, err := readSecretRef(c.DSNFile, c.DSNEnv)
	if err != nil {
		return nil //nolint:nilerr // checkFiles reports a secret it cannot read
	}
	return c.checkTransport(dsn)
}

// checkDatabaseTransports is checkReferencedTransport for the target
// databases whose connection string is referenced (dsnFile or dsnEnv):
// serve refuses to start with one that does not require TLS to another
// host, or does not parse. (An inline one is checked by Validate.)
func (c *Config) checkDatabaseTransports() error {
	var errs []error
	for _, d := range c.Databases {
		var err error
		switch {
		case d.Postgres != nil && (d.Postgres.DSNFile != "" || d.Postgres.DSNEnv != ""):
			if dsn, rerr := readSecretRef(d.Postgres.DSNFile, d.Postgres.DSNEnv); rerr == nil {
				err = postgres.CheckTransport(dsn, d.Postgres.AllowInsecureTransport)
			}
		case d.SQLServer != nil && (d.SQLServer.DSNFile != "" || d.SQLServer.DSNEnv != ""):
			if dsn, rerr := readSecretRef(d.SQLServer.DSNFile, d.SQLServer.DSNEnv); rerr == nil {
				err = sqlserver.CheckTransport(dsn, d.SQLServer.AllowInsecureTransport)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("databases %s: connection string: %w", d.name(), err))
		}
	}
	return errors.Join(errs...)
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// Origin names this instance's log (default
	// "<originPrefix>/<instance>").
	Origin string `yaml:"origin"`
	// OriginPrefix starts the default origin (default "sqlgate"): several
	// deployments whose instances share names (two Helm releases of the
	// same name) and one control database need different prefixes.
	OriginPrefix string `yaml:"originPrefix"`
	// SigningKeyFile holds the Ed25519 checkpoint signing key in note
	// format; it is generated (0600) on first start when the file does not
	// exist. Publish the matching public key (logged at start and served in
	// every export bundle) to your auditors.
	SigningKeyFile string `yaml:"signingKeyFile"`
	// PreviousVerifierKeys are the public keys of this origin's earlier
	// signing keys (after a rotation): the log's latest stored checkpoint
	// must be signed by the signing key or one of these, never by a key
	// only the store names.
	PreviousVerifierKeys []string `yaml:"previousVerifierKeys"`
	// ParamKeyFile holds the HMAC key for parameter values ("<id>:<base64>",
	// generated on first start when missing).
	ParamKeyFile string `yaml:"paramKeyFile"`
	// PreviousParamKeyFiles hold earlier parameter keys (after a rotation of
	// paramKeyFile), in the same form: decision inputs recorded under them
	// are checked with them before the dashboard and `policy replay` get
	// them. They are never created.
	PreviousParamKeyFiles []string      `yaml:"previousParamKeyFiles"`
	CheckpointInterval    time.Duration `yaml:"checkpointInterval"`
	Heartbeat             time.Duration `yaml:"heartbeat"`
	// SinkDir receives write-once copies of the checkpoints.
	SinkDir string `yaml:"sinkDir"`
	// Retention and InputRetention prune record bodies and stored decision
	// inputs older than this (0: keep forever; otherwise at least 24h).
	Retention      time.Duration `yaml:"retention"`
	InputRetention time.Duration `yaml:"inputRetention"`
}

// CredentialsConfig bounds credential lifetimes and counts, and configures
// SQL leases.
type CredentialsConfig struct {
	NATSTTL time.Duration `yaml:"natsTTL"`
	MaxTTL  time.Duration `yaml:"maxTTL"`
	// SQLTTL is a SQL login's lifetime when none is requested (default 15m).
	SQLTTL time.Duration `yaml:"sqlTTL"`
	// ReaperInterval is how often expired SQL leases are revoked (default 30s).
	ReaperInterval time.Duration `yaml:"reaperInterval"`
	// LoginPrefix starts every issued login name (default "sg_").
	LoginPrefix string `yaml:"loginPrefix"`
	// MaxLeasesPerPrincipal bounds unrevoked SQL leases per principal
	// (default 10; negative: unlimited).
	MaxLeasesPerPrincipal int `yaml:"maxLeasesPerPrincipal"`
	// LeaseRetention is how long a revoked or failed SQL lease stays in the
	// lease table (unset: broker.DefaultLeaseRetention, 30 days; 0: kept
	// forever; else at least minLeaseRetention). The audit log keeps every
	// lease's history either way.
	LeaseRetention *time.Duration `yaml:"leaseRetention"`
	// MaxNATSCredentialsPerPrincipal bounds the live (unexpired,
	// unrevoked) NATS user keys per principal; refreshing a held key is
	// never refused (default broker.DefaultMaxNATSCredentials, 1000: every
	// callout connection holds a key of its own; negative: unlimited).
	MaxNATSCredentialsPerPrincipal int `yaml:"maxNATSCredentialsPerPrincipal"`
}

// minLeaseRetention is the shortest credentials.leaseRetention: a lease
// stays listed (sqlgate leases list) for at least a day after it ended.
const minLeaseRetention = 24 * time.Hour

// leaseRetention is broker.LeasesConfig.Retention for the configured
// credentials.leaseRetention (unset: the default; 0: kept forever).
func (c CredentialsConfig) leaseRetention() time.Duration {
	switch r := c.LeaseRetention; {
	case r == nil:
		return 0
	case *r == 0:
		return -1
	default:
		return *r
	}
}

// loadConfig reads and validates a configuration file.
func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(data)
}

// loadServeConfig reads and validates a configuration file and the route
// catalog it names, and checks the two against each other: every problem
// of both, at once (what serve --check reports). With an error it still
// returns the configuration when it decodes, for serve --check to check
// the policy it names too, and the catalog only when it is valid.
func loadServeConfig(path string) (*Config, *route.Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := decodeConfig(data)
	if err != nil {
		return nil, nil, err
	}
	errs := []error{cfg.Validate(), cfg.checkFiles(), cfg.Control.checkReferencedTransport(), cfg.checkDatabaseTransports()}
	var catalog *route.Catalog
	if cfg.Routes != "" {
		// The routes valid on their own are checked against the databases
		// even when others are not.
		valid, err := route.CheckFile(cfg.Routes)
		if err != nil {
			errs = append(errs, err)
		} else {
			catalog = valid
		}
		if valid != nil {
			errs = append(errs, cfg.checkCatalog(valid))
		}
	}
	return cfg, catalog, errors.Join(errs...)
}

func parseConfig(data []byte) (*Config, error) {
	cfg, err := decodeConfig(data)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeConfig decodes a configuration strictly and fills in its defaults.
func decodeConfig(data []byte) (*Config, error) {
	var cfg Config
	if err := yamlstrict.Decode(data, &cfg, inlineSecretHint); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.defaults()
	return &cfg, nil
}

// inlineSecretHint explains why a secret written inline is an unknown key:
// secrets are referenced by file or environment variable, never inline.
func inlineSecretHint(key string) string {
	switch key {
	case "clientSecret", "dsn":
		return "secrets are never inline: use " + key + "File or " + key + "Env"
	case "signingKey", "paramKey", "cookieKey", "tlsKey":
		return "secrets are never inline: use " + key + "File"
	}
	return ""
}

func (c *Config) defaults() {
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8470"
	}
	if c.NATS.AdvertiseURL == "" {
		c.NATS.AdvertiseURL = c.NATS.URL
	}
	if c.Audit.Origin == "" {
		prefix := c.Audit.OriginPrefix
		if prefix == "" {
			prefix = defaultOriginPrefix
		}
		c.Audit.Origin = prefix + "/" + c.Instance
	} else if c.Audit.OriginPrefix != "" {
		c.originConflict = true
	}
	c.Identity.allowCLIClient()
}

// allowCLIClient adds identity.cli.clientID to the allowedClients of the
// issuers the CLI signs in with (cliSignsInWith) that set allowedClients:
// the CLI is sqlgate's own application, whose tokens every `sqlgate login`
// user presents, so an operator need not list it again. (The dashboard's
// client, identity.web.clientID, is accepted by oidc.WebLogin for its own
// sign-ins.) An issuer without allowedClients accepts any client already.
func (ic *IdentityConfig) allowCLIClient() {
	id := ic.CLI.ClientID
	if id == "" || ic.CLI.Issuer == "" {
		return
	}
	issuers := slices.Clone(ic.Issuers)
	for i, is := range issuers {
		if len(is.AllowedClients) > 0 && !slices.Contains(is.AllowedClients, id) && cliSignsInWith(ic.CLI.Issuer, is) {
			issuers[i].AllowedClients = append(slices.Clip(is.AllowedClients), id)
		}
	}
	ic.Issuers = issuers
}

// cliSignsInWith reports whether the CLI, told cliIssuer (identity.cli.issuer),
// signs in with the issuer entry ic: ic's issuer is cliIssuer, or an Entra
// {tenantid} template that cliIssuer fills in (a tenant's issuer, or
// organizations/common), or ic's discovery URL is cliIssuer.
func cliSignsInWith(cliIssuer string, ic oidc.IssuerConfig) bool {
	want := strings.TrimSuffix(cliIssuer, "/")
	iss := strings.TrimSuffix(ic.Issuer, "/")
	if iss == want || (ic.DiscoveryURL != "" && strings.TrimSuffix(ic.DiscoveryURL, "/") == want) {
		return true
	}
	prefix, suffix, ok := strings.Cut(iss, oidc.TenantPlaceholder)
	if !ok {
		return false
	}
	tenant, found := strings.CutPrefix(want, prefix)
	tenant, found2 := strings.CutSuffix(tenant, suffix)
	return found && found2 && tenant != "" && !strings.Contains(tenant, "/")
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Routes == "" {
		bad("routes: the route catalog file is required")
	}
	if c.NATS.URL == "" {
		bad("nats.url is required")
	}
	if c.NATS.KeysDir == "" {
		bad("nats.keysDir is required (write it with sqlgated nats-setup)")
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		bad("http.tlsCertFile and http.tlsKeyFile go together")
	}
	if m := c.HTTP.MetricsListen; m != "" {
		if _, port, err := net.SplitHostPort(m); err != nil || port == "" {
			bad("http.metricsListen must be host:port or :port (e.g. \":9090\"), not %q", m)
		} else if m == c.HTTP.Listen {
			bad("http.metricsListen must differ from http.listen (%s): it keeps /metrics off the API's port", c.HTTP.Listen)
		}
	}
	if c.HTTP.MaxConnections < 0 {
		bad("http.maxConnections must not be negative (0: half the file descriptor limit)")
	}
	if d := c.HTTP.ShutdownDelay; d < 0 || d > maxShutdownDelay {
		bad("http.shutdownDelay must be 0 to %s, not %s", maxShutdownDelay, d)
	}
	// What natsvc refuses at start (a negative queue) or would replace with
	// the default (negative workers): refused here, before anything opens.
	if c.NATS.Workers < 0 {
		bad("nats.workers must not be negative, not %d (leave it unset for the default, %d)", c.NATS.Workers, defaultWorkers)
	}
	if c.NATS.QueueLen < 0 {
		bad("nats.queueLen must not be negative, not %d (leave it unset for the default, 1024)", c.NATS.QueueLen)
	}
	if a := c.NATS.AsyncMaxAge; a < 0 || (a > 0 && a < minAsyncMaxAge) {
		bad("nats.asyncMaxAge must be at least %s, not %s (leave it unset for the default, %s): queued requests are given up when an outage outlasts it",
			minAsyncMaxAge, a, natsvc.DefaultAsyncMaxAge)
	}
	if r := c.NATS.AsyncReplicas; r < 0 || r > natsvc.MaxAsyncReplicas {
		bad("nats.asyncReplicas must be 1 to %d, not %d (leave it unset for the default: 1 on a single NATS server, %d in a cluster)",
			natsvc.MaxAsyncReplicas, r, natsvc.DefaultClusterAsyncReplicas)
	}
	errs = append(errs, c.validatePlaintext()...)
	errs = append(errs, prefixed("identity: ", c.Identity.Validate())...)
	if c.Identity.CLI.Issuer == "" || c.Identity.CLI.ClientID == "" {
		bad("identity.cli.issuer and identity.cli.clientID are required (what sqlgate login uses)")
	} else if len(c.Identity.Issuers) > 0 && !slices.ContainsFunc(c.Identity.Issuers, func(ic oidc.IssuerConfig) bool { return cliSignsInWith(c.Identity.CLI.Issuer, ic) }) {
		bad("identity.cli.issuer %q is none of identity.issuers (their issuer or discoveryURL): the tokens of every sqlgate login would be refused as from an unknown issuer", c.Identity.CLI.Issuer)
	}
	if err := oidc.CheckServiceScopes(c.Identity.CLI.ServiceScopes); err != nil {
		bad("identity.cli.serviceScopes: %v", err)
	}
	if w := c.Identity.Web; w != nil {
		if w.Issuer == "" || w.ClientID == "" || w.CookieKeyFile == "" {
			bad("identity.web needs issuer, clientID and cookieKeyFile")
		}
		if w.Issuer != "" && len(c.Identity.Issuers) > 0 && !slices.ContainsFunc(c.Identity.Issuers, func(ic oidc.IssuerConfig) bool { return ic.Name == w.Issuer }) {
			names := make([]string, len(c.Identity.Issuers))
			for i, ic := range c.Identity.Issuers {
				names[i] = ic.Name
			}
			bad("identity.web.issuer %q names no entry of identity.issuers (names: %s)", w.Issuer, strings.Join(names, ", "))
		}
		for _, ic := range c.Identity.Issuers {
			if w.ClientID != "" && ic.Name == w.Issuer && !ic.AcceptsWebClient(w.ClientID) {
				bad("identity.web.clientID %q is not among the audiences of issuer %q (%s): the dashboard's ID tokens are addressed to it, "+
					"so every sign-in would be refused; add it to identity.issuers[].audiences", w.ClientID, ic.Name, strings.Join(ic.Audiences, ", "))
			}
		}
		if (w.ClientSecretFile == "") == (w.ClientSecretEnv == "") {
			bad("identity.web needs exactly one of clientSecretFile and clientSecretEnv")
		}
		if c.HTTP.PublicURL == "" {
			bad("identity.web needs http.publicURL for the redirect URL")
		}
	}
	if c.Policy.Dir == "" {
		bad("policy.dir is required")
	}
	if len(c.Databases) == 0 {
		bad("databases: at least one database is required")
	}
	// The lease manager names every login with credentials.loginPrefix; a
	// database's login issuer refuses names without its own prefix. Two
	// different prefixes would refuse every issuance, so there is one.
	loginPrefix := c.Credentials.LoginPrefix
	if loginPrefix == "" {
		loginPrefix = broker.DefaultLoginPrefix
	}
	if !validLoginPrefix(loginPrefix) {
		bad("credentials.loginPrefix %q must be 1 to 16 characters a-z, 0-9 or _, starting with a letter", loginPrefix)
	}
	names := map[string]bool{}
	for i, d := range c.Databases {
		name, err := d.validate()
		errs = append(errs, prefixed(fmt.Sprintf("databases[%d]: ", i), err)...)
		for _, l := range []struct{ key, prefix string }{
			{"postgresLogins", d.loginsPrefix()}, {"sqlserverLogins", d.sqlserverLoginsPrefix()},
		} {
			if l.prefix != "" && l.prefix != loginPrefix {
				bad("databases[%d]: %s.loginPrefix %q differs from credentials.loginPrefix %q, which names every issued login, so this database "+
					"would refuse each one: remove %s.loginPrefix and set credentials.loginPrefix (the one setting for every database)",
					i, l.key, l.prefix, loginPrefix, l.key)
			}
		}
		if name != "" && names[name] {
			bad("databases[%d]: duplicate name %q", i, name)
		}
		names[name] = true
	}
	switch c.Control.Dialect {
	case "sqlite":
		if c.Control.Path == "" {
			bad("control.path is required for sqlite")
		}
	case "postgres", "sqlserver":
		if (c.Control.DSNFile == "") == (c.Control.DSNEnv == "") {
			bad("control needs exactly one of dsnFile and dsnEnv")
		}
	default:
		bad("control.dialect must be sqlite, postgres or sqlserver")
	}
	if c.Control.AllowInsecureTransport && c.Control.Dialect != "postgres" && c.Control.Dialect != "sqlserver" {
		bad("control.allowInsecureTransport applies to the postgres and sqlserver dialects only")
	}
	if c.Audit.SigningKeyFile == "" || c.Audit.ParamKeyFile == "" {
		bad("audit.signingKeyFile and audit.paramKeyFile are required")
	}
	if c.originConflict {
		bad("audit.origin and audit.originPrefix: set one (originPrefix only builds the default origin, <originPrefix>/<instance>)")
	}
	if err := validAuditOrigin(c.Audit.Origin); err != nil {
		errs = append(errs, err)
	}
	for i, k := range c.Audit.PreviousVerifierKeys {
		// Never quote the entry: a private key pasted here is a secret.
		switch {
		case strings.HasPrefix(strings.ToUpper(strings.TrimSpace(k)), "PRIVATE+KEY+"):
			bad("audit.previousVerifierKeys[%d] is a private signing key, not a public verifier key: remove it from the configuration "+
				"and put the public key there (logged at start as verifier_key=)", i)
		default:
			if _, err := audit.NewVerifiers(k); err != nil {
				bad("audit.previousVerifierKeys[%d] is not a verifier key (<origin>+<hash>+<base64 key>, as logged at start as verifier_key=)", i)
			}
		}
	}
	errs = append(errs, c.validateDurations()...)
	if len(c.HTTP.AuditorGroups) == 0 {
		bad("http.auditorGroups: name at least one group that may read the audit log")
	}
	return errors.Join(errs...)
}

// prefixed returns each of err's joined errors (recursively) with prefix,
// so that every line of the report says where its problem is.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	// Only a join at the top: a join wrapped with context is one problem.
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(prefix, e)...)
		}
		return out
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

// minAuditRetention is the shortest audit.retention and audit.inputRetention
// accepted (0 keeps everything): a shorter one is a typo (8760 meant as
// hours is 8.76µs), and it would prune bodies before anyone read them.
const minAuditRetention = 24 * time.Hour

// minAsyncMaxAge is the shortest nats.asyncMaxAge accepted: a shorter one
// gives up queued requests in an outage the gate has barely noticed (24 meant
// as hours is 24ns).
const minAsyncMaxAge = time.Minute

// validateDurations reports durations that make no sense: negative ones,
// retentions too short to be meant, and a default credential lifetime above
// the cap every lifetime is cut to.
func (c *Config) validateDurations() []error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"policy.evalTimeout", c.Policy.EvalTimeout},
		{"audit.checkpointInterval", c.Audit.CheckpointInterval},
		{"audit.heartbeat", c.Audit.Heartbeat},
		{"credentials.natsTTL", c.Credentials.NATSTTL},
		{"credentials.maxTTL", c.Credentials.MaxTTL},
		{"credentials.sqlTTL", c.Credentials.SQLTTL},
		{"credentials.reaperInterval", c.Credentials.ReaperInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, not %s", d.key, d.v))
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"audit.retention", c.Audit.Retention}, {"audit.inputRetention", c.Audit.InputRetention}} {
		if d.v < 0 || (d.v > 0 && d.v < minAuditRetention) {
			errs = append(errs, fmt.Errorf("%s must be 0 (keep forever) or at least %s, not %s", d.key, minAuditRetention, d.v))
		}
	}
	if r := c.Credentials.LeaseRetention; r != nil && (*r < 0 || (*r > 0 && *r < minLeaseRetention)) {
		errs = append(errs, fmt.Errorf("credentials.leaseRetention must be 0 (keep forever) or at least %s, not %s", minLeaseRetention, *r))
	}
	maxTTL := c.Credentials.MaxTTL
	if maxTTL <= 0 {
		maxTTL = broker.DefaultMaxTTL
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"credentials.natsTTL", c.Credentials.NATSTTL}, {"credentials.sqlTTL", c.Credentials.SQLTTL}} {
		if d.v > maxTTL {
			errs = append(errs, fmt.Errorf("%s %s is above credentials.maxTTL %s, which caps every credential: lower it or raise maxTTL", d.key, d.v, maxTTL))
		}
	}
	return errs
}

// validAuditOrigin applies the audit log's rule for an origin (non-empty
// printable text without spaces or '+', at most 256 bytes; the origin is
// also the signing key's name), so that --check refuses what the log would
// refuse at start. The audit package exports the rule only through the
// functions that use it: GenerateKey applies it first, as serve does on a
// first start, and the key it makes from zeros is thrown away.
func validAuditOrigin(origin string) error {
	if _, _, err := audit.GenerateKey(zeroReader{}, origin); err != nil {
		return fmt.Errorf("audit.origin %q must be non-empty printable text without spaces or '+', at most 256 bytes (it names the log and its signing key)", origin)
	}
	return nil
}

// zeroReader reads zeros: a throwaway key's randomness.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// name returns the database's name (what routes use), "" when no dialect
// is set.
func (d DatabaseConfig) name() string {
	switch {
	case d.SQLite != nil:
		return d.SQLite.Name
	case d.Postgres != nil:
		return d.Postgres.Name
	case d.SQLServer != nil:
		return d.SQLServer.Name
	}
	return ""
}

func (d DatabaseConfig) validate() (string, error) {
	n := 0
	var name string
	var err error
	if d.SQLite != nil {
		n++
		name, err = d.SQLite.Name, d.SQLite.Validate()
	}
	if d.Postgres != nil {
		n++
		name, err = d.Postgres.Name, d.Postgres.Validate()
	}
	if d.SQLServer != nil {
		n++
		name, err = d.SQLServer.Name, d.SQLServer.Validate()
	}
	if n != 1 {
		return "", errors.New("set exactly one of sqlite, postgres and sqlserver")
	}
	// Secrets are never inline: a connection string may hold a password.
	// (The adapters take dsn for tests and development; this file does not.)
	// Never quote it.
	switch {
	case d.Postgres != nil && d.Postgres.DSN != "":
		err = errors.Join(err, errors.New("postgres.dsn: secrets are never inline (a connection string may hold a password): use dsnFile or dsnEnv"))
	case d.SQLServer != nil && d.SQLServer.DSN != "":
		err = errors.Join(err, errors.New("sqlserver.dsn: secrets are never inline (a connection string may hold a password): use dsnFile or dsnEnv"))
	}
	switch r := d.idempotencyRetention(); {
	case r < 0 || (r > 0 && r < minIdempotencyRetention):
		err = errors.Join(err, fmt.Errorf("idempotencyRetention must be 0 (keep forever) or at least %s, not %s", minIdempotencyRetention, r))
	case r > 0 && d.onBehalfOf():
		err = errors.Join(err, errors.New("idempotencyRetention: an onBehalfOf database has no login of sqlgate's own to prune with; "+
			"leave it unset and prune with a scheduled job (docs/sqlserver.md, PruneBatch)"))
	}
	// The logins' name defaults to the database's, as loginIssuer does it;
	// the configuration itself is left as written.
	switch {
	case d.PostgresLogins != nil && d.Postgres == nil:
		err = errors.Join(err, errors.New("postgresLogins needs a postgres database"))
	case d.SQLServerLogins != nil && d.SQLServer == nil:
		err = errors.Join(err, errors.New("sqlserverLogins needs a sqlserver database"))
	case d.PostgresLogins != nil:
		c := *d.PostgresLogins
		if c.Name == "" {
			c.Name = name
		}
		err = errors.Join(append([]error{err}, prefixed("postgresLogins: ", c.Validate())...)...)
	case d.SQLServerLogins != nil:
		c := *d.SQLServerLogins
		if c.Name == "" {
			c.Name = name
		}
		err = errors.Join(append([]error{err}, prefixed("sqlserverLogins: ", c.Validate())...)...)
	}
	return name, err
}

// checkCatalog reports every route whose database the configuration does
// not define (serve could not run it).
func (c *Config) checkCatalog(catalog *route.Catalog) error {
	defined := map[string]bool{}
	for _, d := range c.Databases {
		defined[d.name()] = true
	}
	var errs []error
	for _, db := range catalog.Databases() {
		if defined[db] {
			continue
		}
		var subjects []string
		for _, r := range catalog.Routes() {
			if r.Database == db {
				subjects = append(subjects, r.Subject)
			}
		}
		errs = append(errs, fmt.Errorf("routes: %s use database %q, which databases does not define", strings.Join(subjects, ", "), db))
	}
	return errors.Join(errs...)
}

// readSecretRef reads a secret from a file (trimmed) or an environment
// variable.
func readSecretRef(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := readSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case env != "":
		v := os.Getenv(env)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty", env)
		}
		return v, nil
	}
	return "", errors.New("no secret reference")
}

// loginsPrefix and sqlserverLoginsPrefix return the loginPrefix written in
// postgresLogins and sqlserverLogins ("" when unset).
func (d DatabaseConfig) loginsPrefix() string {
	if d.PostgresLogins == nil {
		return ""
	}
	return d.PostgresLogins.LoginPrefix
}

func (d DatabaseConfig) sqlserverLoginsPrefix() string {
	if d.SQLServerLogins == nil {
		return ""
	}
	return d.SQLServerLogins.LoginPrefix
}

// validLoginPrefix applies the lease manager's rule for a login prefix
// (broker.NewLeases refuses anything else at start; TestLoginPrefixRule
// keeps the two equal).
func validLoginPrefix(s string) bool {
	if len(s) == 0 || len(s) > 16 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c != '_' && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validatePlaintext refuses URLs that would carry tokens and cookies in the
// clear across a network: a NATS server reached without TLS (clients send
// their OIDC access token in CONNECT through the auth callout; sqlgated's
// own connections carry credentials) and a dashboard whose public URL is
// plain HTTP, unless the opt-out says the network is trusted. Loopback
// addresses are always accepted.
func (c *Config) validatePlaintext() []error {
	var errs []error
	if !c.NATS.AllowPlaintext {
		keys := []struct{ key, urls string }{{"nats.url", c.NATS.URL}}
		if c.NATS.AdvertiseURL != c.NATS.URL {
			keys = append(keys, struct{ key, urls string }{"nats.advertiseURL", c.NATS.AdvertiseURL})
		}
		for _, k := range keys {
			for _, host := range plaintextNATSHosts(k.urls) {
				errs = append(errs, fmt.Errorf("%s: %s would be reached without TLS, and access tokens and credentials would cross the network "+
					"in the clear: use tls:// (a server set up with sqlgated nats-setup --tls-cert and --tls-key; nats.caFile for a private CA), "+
					"or set nats.allowPlaintext: true on a network you trust", k.key, host))
			}
		}
	}
	// Minted users may connect as plain NATS clients only (natsauth's
	// connection types): a websocket URL handed to clients would refuse
	// every credential.
	for _, u := range strings.Split(c.NATS.AdvertiseURL, ",") {
		if scheme, _, ok := strings.Cut(strings.TrimSpace(u), "://"); ok && (strings.EqualFold(scheme, "ws") || strings.EqualFold(scheme, "wss")) {
			errs = append(errs, fmt.Errorf("nats.advertiseURL: %s:// is a websocket URL, but the NATS credentials sqlgate issues connect as plain NATS clients only: "+
				"advertise the server's nats:// or tls:// listener", scheme))
			break
		}
	}
	if c.Identity.Web != nil && !c.HTTP.AllowPlaintext {
		if u, err := url.Parse(c.HTTP.PublicURL); err == nil && strings.EqualFold(u.Scheme, "http") && !loopbackHost(u.Hostname()) {
			errs = append(errs, fmt.Errorf("http.publicURL: %s is plain HTTP, and the dashboard's sign-in cookies and authorization codes would cross the network "+
				"in the clear: use https:// (http.tlsCertFile and http.tlsKeyFile, or a proxy that ends TLS, whose https:// address is the publicURL), "+
				"or set http.allowPlaintext: true if browsers reach sqlgated over plain HTTP on a network you trust", u.Host))
		}
	}
	return errs
}

// plaintextNATSHosts returns host:port of every server of a NATS URL list
// (comma-separated, as nats.go takes it) that is reached without TLS on a
// host other than loopback. A URL without a scheme is nats://, as nats.go
// reads it. Credentials in a URL are never returned.
func plaintextNATSHosts(list string) []string {
	var out []string
	for i, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := url.Parse(u)
		if err != nil {
			out = append(out, fmt.Sprintf("entry %d (not a URL)", i+1))
			continue
		}
		switch strings.ToLower(p.Scheme) {
		case "tls", "wss":
			continue
		}
		if !loopbackHost(p.Hostname()) {
			out = append(out, p.Scheme+"://"+p.Host)
		}
	}
	return out
}

// loopbackHost reports a host name or address that stays on this machine.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFiles reports what of the files and environment variables the
// configuration references would make serve refuse at start, or would
// expose, every problem at once: a secret file that is missing, unreadable,
// empty or accessible to other users; a file serve reads that is not (the
// HTTP TLS certificate, the NATS CA); an *Env variable that is unset or
// empty; a NATS seed neither in nats.keysDir nor in its variable; a
// checkpoint signing key named for another origin; a checkpoint sink
// directory that cannot be created; the private key of a client
// certificate a PostgreSQL connection string names (checkDSNKeyFiles).
// The files found are read as serve reads them: a cookie key under 32
// bytes, an HTTP certificate and key that do not load, a NATS seed that is
// none are refused. The audit signing and parameter keys may be missing
// (serve creates them at its first start) if their directory can be
// created. It reads the secrets only to see that they are not empty (and
// the signing key for its name, the cookie key for its length, the HTTP
// key and the seeds to load them); no error quotes one. It creates
// nothing.
func (c *Config) checkFiles() error {
	var errs []error
	failed := map[string]bool{} // the keys of the files reported
	for _, f := range c.secretFiles() {
		if err := checkSecretFile(f); err != nil {
			errs = append(errs, err)
			failed[f.key] = true
		}
	}
	for _, f := range c.plainFiles() {
		if err := checkPlainFile(f.key, f.path); err != nil {
			errs = append(errs, err)
			failed[f.key] = true
		}
	}
	for _, e := range c.secretEnvs() {
		if os.Getenv(e.name) == "" {
			errs = append(errs, fmt.Errorf("%s: environment variable %s is unset or empty (under systemd, set it in %s; in the Helm chart, with env or envFrom)",
				e.key, e.name, systemdEnvFile))
		}
	}
	errs = append(errs, c.checkDSNKeyFiles()...)
	if err := checkSigningKeyName(c.Audit.SigningKeyFile, c.Audit.Origin); err != nil {
		errs = append(errs, err)
	}
	if err := checkSinkDir(c.Audit.SinkDir); err != nil {
		errs = append(errs, err)
	}
	// What serve reads from the files found above, as serve reads it: a
	// file already reported is not read again.
	if w := c.Identity.Web; w != nil && w.CookieKeyFile != "" && !failed["identity.web.cookieKeyFile"] {
		if _, err := readCookieKey(w.CookieKeyFile); err != nil {
			errs = append(errs, err)
		}
	}
	if !failed["http.tlsCertFile"] && !failed["http.tlsKeyFile"] {
		if _, err := loadHTTPCert(c.HTTP); err != nil {
			errs = append(errs, err)
		}
	}
	if c.NATS.KeysDir != "" && !failed["nats.keysDir"] {
		if _, err := loadNATSKeys(c.NATS.KeysDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readCookieKey reads identity.web.cookieKeyFile: a secret file of at least
// 32 bytes (oidc.NewWebLogin's minimum).
func readCookieKey(path string) ([]byte, error) {
	key, err := readSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity.web.cookieKeyFile: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("identity.web.cookieKeyFile: %s holds %d bytes, and the cookie key needs at least 32 random bytes (head -c 32 /dev/urandom > FILE)", path, len(key))
	}
	return key, nil
}

// loadHTTPCert loads http.tlsCertFile and http.tlsKeyFile (nil without
// them). The key file's mode is checkFiles' to check.
func loadHTTPCert(h HTTPConfig) (*tls.Certificate, error) {
	if h.TLSCertFile == "" || h.TLSKeyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(h.TLSCertFile, h.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("http.tlsCertFile and http.tlsKeyFile: %w", err)
	}
	return &cert, nil
}

// loadNATSKeys loads sqlgated's NATS keys: the SQLGATE_NATS_*_SEED
// variables, else the seed files of dir.
func loadNATSKeys(dir string) (*natsauth.Keys, error) {
	keys, err := natsauth.LoadKeys(dir, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("NATS keys (nats.keysDir or the SQLGATE_NATS_*_SEED variables): %w", err)
	}
	return keys, nil
}

// checkDSNKeyFiles applies the secret files' rules to the client
// certificate's private key a PostgreSQL connection string names (the
// control database's, and each target database's whose string is
// referenced), and checkPlainFile to the certificate: pgx reads the key
// whatever its mode (libpq refuses a key others may read). A connection
// string it cannot read is reported by the checks above.
func (c *Config) checkDSNKeyFiles() []error {
	type ref struct{ key, file, env string }
	var refs []ref
	if c.Control.Dialect == "postgres" {
		refs = append(refs, ref{"control", c.Control.DSNFile, c.Control.DSNEnv})
	}
	for i, d := range c.Databases {
		if d.Postgres != nil && (d.Postgres.DSNFile != "" || d.Postgres.DSNEnv != "") {
			refs = append(refs, ref{fmt.Sprintf("databases[%d].postgres", i), d.Postgres.DSNFile, d.Postgres.DSNEnv})
		}
	}
	var errs []error
	for _, r := range refs {
		dsn, err := readSecretRef(r.file, r.env)
		if err != nil {
			continue
		}
		key, cert := postgresClientCertFiles(dsn, os.Getenv)
		if key != "" {
			if err := checkSecretFile(secretFile{key: r.key + " connection string's sslkey", path: key}); err != nil {
				errs = append(errs, err)
			}
		}
		if cert != "" {
			if err := checkPlainFile(r.key+" connection string's sslcert", cert); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// checkDSNKeyFile refuses, at open, a PostgreSQL connection string whose
// client certificate's private key (sslkey) other users may access
// (checkDSNKeyFiles at --check).
func checkDSNKeyFile(dsn string) error {
	if key, _ := postgresClientCertFiles(dsn, os.Getenv); key != "" {
		if err := secretfile.Check(key, "the private key of a client certificate"); err != nil {
			return fmt.Errorf("connection string's sslkey: %w", err)
		}
	}
	return nil
}

// postgresClientCertFiles returns the client certificate's key and
// certificate files pgx reads for a PostgreSQL connection string (URL or
// keyword/value form): its sslkey and sslcert, else PGSSLKEY and PGSSLCERT,
// else ~/.postgresql/postgresql.key and .crt when both exist; none with
// sslcertmode=disable. A service file's settings are not read. A string
// that does not parse names none (the transport check refuses it).
func postgresClientCertFiles(dsn string, getenv func(string) string) (key, cert string) {
	var settings map[string]string
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		// The query as url.Parse finds it: the URL as a whole may not parse
		// for net/url (several hosts: host1:5432,host2:5432).
		_, query, _ := strings.Cut(dsn, "?")
		query, _, _ = strings.Cut(query, "#")
		q, err := url.ParseQuery(query)
		if err != nil {
			return "", ""
		}
		settings = map[string]string{}
		for k, v := range q {
			settings[k] = v[len(v)-1]
		}
	} else {
		settings = keywordValueSettings(dsn)
	}
	if settings["sslcertmode"] == "disable" || (settings["sslcertmode"] == "" && getenv("PGSSLCERTMODE") == "disable") {
		return "", ""
	}
	pick := func(name, env string) (string, bool) {
		if v, ok := settings[name]; ok {
			return v, true
		}
		if v := getenv(env); v != "" {
			return v, true
		}
		return "", false
	}
	key, keySet := pick("sslkey", "PGSSLKEY")
	cert, certSet := pick("sslcert", "PGSSLCERT")
	if !keySet && !certSet {
		if home, err := os.UserHomeDir(); err == nil {
			k, c := filepath.Join(home, ".postgresql", "postgresql.key"), filepath.Join(home, ".postgresql", "postgresql.crt")
			if _, err := os.Stat(k); err == nil {
				if _, err := os.Stat(c); err == nil {
					return k, c
				}
			}
		}
	}
	return key, cert
}

// keywordValueSettings reads a libpq keyword/value connection string
// (key=value, or key='quoted value', with backslash escapes) as pgx does;
// what does not parse ends it.
func keywordValueSettings(s string) map[string]string {
	const space = " \t\n\r\v\f"
	settings := map[string]string{}
	s = strings.TrimLeft(s, space)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		key := strings.Trim(s[:eq], space)
		s = strings.TrimLeft(s[eq+1:], space)
		var raw string
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			end := 0
			for ; end < len(s) && s[end] != '\''; end++ {
				if s[end] == '\\' {
					end++
				}
			}
			if end >= len(s) {
				break // unterminated
			}
			raw, s = s[:end], s[end+1:]
		} else {
			end := 0
			for ; end < len(s) && !strings.ContainsRune(space, rune(s[end])); end++ {
				if s[end] == '\\' {
					end++
				}
			}
			end = min(end, len(s))
			raw, s = s[:end], s[end:]
		}
		var val strings.Builder
		for i := 0; i < len(raw); i++ {
			if raw[i] == '\\' {
				i++
				if i == len(raw) {
					break
				}
			}
			val.WriteByte(raw[i])
		}
		settings[key] = val.String()
		s = strings.TrimLeft(s, space)
	}
	return settings
}

// systemdEnvFile is where the shipped systemd unit reads the *Env
// variables from (EnvironmentFile).
const systemdEnvFile = "/etc/sqlgate/sqlgated.env"

// secretFile is a secret file the configuration names: its key, its path,
// whether serve creates it when it is missing (the audit keys), and what to
// do when it is missing.
type secretFile struct {
	key, path string
	created   bool
	hint      string
}

// secretFiles lists every secret file the configuration names, with its key.
func (c *Config) secretFiles() []secretFile {
	var out []secretFile
	add := func(key, path string) {
		if path != "" {
			out = append(out, secretFile{key: key, path: path})
		}
	}
	if p := c.Audit.SigningKeyFile; p != "" {
		out = append(out, secretFile{key: "audit.signingKeyFile", path: p, created: true})
	}
	if p := c.Audit.ParamKeyFile; p != "" {
		out = append(out, secretFile{key: "audit.paramKeyFile", path: p, created: true})
	}
	for i, f := range c.Audit.PreviousParamKeyFiles {
		add(fmt.Sprintf("audit.previousParamKeyFiles[%d]", i), f)
	}
	add("http.tlsKeyFile", c.HTTP.TLSKeyFile)
	add("control.dsnFile", c.Control.DSNFile)
	if w := c.Identity.Web; w != nil {
		add("identity.web.cookieKeyFile", w.CookieKeyFile)
		add("identity.web.clientSecretFile", w.ClientSecretFile)
	}
	for i, ic := range c.Identity.Issuers {
		add(fmt.Sprintf("identity.issuers[%d].clientSecretFile", i), ic.ClientSecretFile)
		add(fmt.Sprintf("identity.issuers[%d].overage.clientSecretFile", i), ic.Overage.ClientSecretFile)
	}
	for i, d := range c.Databases {
		switch {
		case d.Postgres != nil:
			add(fmt.Sprintf("databases[%d].postgres.dsnFile", i), d.Postgres.DSNFile)
			add(fmt.Sprintf("databases[%d].postgres.passwordFile", i), d.Postgres.PasswordFile)
		case d.SQLServer != nil:
			add(fmt.Sprintf("databases[%d].sqlserver.dsnFile", i), d.SQLServer.DSNFile)
			add(fmt.Sprintf("databases[%d].sqlserver.passwordFile", i), d.SQLServer.PasswordFile)
			if a := d.SQLServer.AzureAD; a != nil {
				// The certificate file holds the client's private key.
				add(fmt.Sprintf("databases[%d].sqlserver.azureAD.clientCertPath", i), a.ClientCertPath)
			}
		}
	}
	if c.NATS.KeysDir != "" {
		for _, name := range natsauth.KeyNames() {
			if os.Getenv(natsauth.EnvName(name)) == "" { // the variable wins over the file
				out = append(out, secretFile{
					key: "nats.keysDir", path: filepath.Join(c.NATS.KeysDir, name+".nk"),
					hint: fmt.Sprintf("write the seeds with sqlgated nats-setup --keys %s, or set %s", c.NATS.KeysDir, natsauth.EnvName(name)),
				})
			}
		}
	}
	return out
}

type fileRef struct{ key, path string }

// plainFiles lists the files serve reads at start that hold no secret
// (their mode is not checked).
func (c *Config) plainFiles() []fileRef {
	var out []fileRef
	add := func(key, path string) {
		if path != "" {
			out = append(out, fileRef{key, path})
		}
	}
	add("http.tlsCertFile", c.HTTP.TLSCertFile)
	add("nats.caFile", c.NATS.CAFile)
	for i, d := range c.Databases {
		if d.SQLServer != nil && d.SQLServer.AzureAD != nil {
			// A federated token, short-lived (Kubernetes projects it 0644).
			add(fmt.Sprintf("databases[%d].sqlserver.azureAD.tokenFilePath", i), d.SQLServer.AzureAD.TokenFilePath)
		}
	}
	return out
}

type envRef struct{ key, name string }

// secretEnvs lists the environment variables the configuration takes
// secrets from (its *Env keys).
func (c *Config) secretEnvs() []envRef {
	var out []envRef
	add := func(key, name string) {
		if name != "" {
			out = append(out, envRef{key, name})
		}
	}
	add("control.dsnEnv", c.Control.DSNEnv)
	if w := c.Identity.Web; w != nil {
		add("identity.web.clientSecretEnv", w.ClientSecretEnv)
	}
	for i, ic := range c.Identity.Issuers {
		add(fmt.Sprintf("identity.issuers[%d].clientSecretEnv", i), ic.ClientSecretEnv)
		add(fmt.Sprintf("identity.issuers[%d].overage.clientSecretEnv", i), ic.Overage.ClientSecretEnv)
	}
	for i, d := range c.Databases {
		switch {
		case d.Postgres != nil:
			add(fmt.Sprintf("databases[%d].postgres.dsnEnv", i), d.Postgres.DSNEnv)
			add(fmt.Sprintf("databases[%d].postgres.passwordEnv", i), d.Postgres.PasswordEnv)
		case d.SQLServer != nil:
			add(fmt.Sprintf("databases[%d].sqlserver.dsnEnv", i), d.SQLServer.DSNEnv)
			add(fmt.Sprintf("databases[%d].sqlserver.passwordEnv", i), d.SQLServer.PasswordEnv)
		}
	}
	return out
}

// checkSecretFile reports a secret file serve could not use: missing (unless
// serve creates it, and can), unreadable, empty, or accessible to other
// users (see readSecretFile). It reads the file; no error quotes it.
func checkSecretFile(f secretFile) error {
	b, err := readSecretFile(f.path)
	switch {
	case (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) && f.created:
		return checkCreatable(f.key, f.path)
	case errors.Is(err, fs.ErrNotExist):
		msg := fmt.Sprintf("%s: %s does not exist", f.key, f.path)
		if f.hint != "" {
			msg += " (" + f.hint + ")"
		}
		return errors.New(msg)
	case err != nil:
		return fmt.Errorf("%s: %w", f.key, err)
	case len(bytes.TrimSpace(b)) == 0:
		return fmt.Errorf("%s: %s is empty", f.key, f.path)
	}
	return nil
}

// checkPlainFile reports a file serve reads that is missing, unreadable or
// empty.
func checkPlainFile(key, path string) error {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s does not exist", key, path)
	case err != nil:
		return fmt.Errorf("%s: %w", key, err)
	case len(bytes.TrimSpace(b)) == 0:
		return fmt.Errorf("%s: %s is empty", key, path)
	}
	return nil
}

// checkCreatable reports a missing file serve creates at its first start
// (the audit keys) whose directory it could not create or write: a path
// through a file, or a nearest existing directory that is not writable
// (a read-only file system; in the Helm chart, a volume not mounted). It
// creates nothing.
func checkCreatable(key, path string) error {
	p := filepath.Dir(filepath.Clean(path))
	for {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s: %s does not exist and cannot be created: %s is not a directory", key, path, p)
		case err == nil:
			if aerr := unix.Access(p, unix.W_OK|unix.X_OK); aerr != nil {
				return fmt.Errorf("%s: %s does not exist and cannot be created at the first start: %s is not writable (%w)", key, path, p, aerr)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR): // ENOTDIR: a file above, found next
			return fmt.Errorf("%s: %w", key, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("%s: %s: no existing directory above it", key, path)
		}
		p = parent
	}
}

// readSecretFile reads a secret file, refusing one that users other than
// its owner and group may read, write or run (a Kubernetes Secret mounted
// 0440 with the pod's fsGroup passes).
func readSecretFile(path string) ([]byte, error) {
	return secretfile.Read(path, "a secret")
}

// checkSigningKeyName refuses a checkpoint signing key named for another
// origin: the audit log refuses it at start (the key's name is the log's
// origin), typically after the host was renamed with audit.origin left to
// its default. A missing or unreadable file is checkSecretFile's to
// report. Only the key's name is ever quoted.
func checkSigningKeyName(path, origin string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return nil //nolint:nilerr // missing, unreadable or empty: checkSecretFile reports it
	}
	s, err := audit.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("audit.signingKeyFile: %s holds no checkpoint signing key (want the note format PRIVATE+KEY+<origin>+<hash>+<key>)", path)
	}
	if s.Name() != origin {
		return fmt.Errorf("audit.signingKeyFile: %s holds the key of origin %q, but audit.origin is %q (by default %s/<instance>, and the instance "+
			"the host name): set audit.origin to %q to keep that log, or move the key file away to start a new origin with a new key",
			path, s.Name(), origin, defaultOriginPrefix, s.Name())
	}
	return nil
}

// checkSinkDir refuses an audit.sinkDir that serve could not create: a path
// through a file, or whose nearest existing directory is not writable (a
// read-only file system: in the Helm chart, mount a volume there). It
// creates nothing.
func checkSinkDir(dir string) error {
	if dir == "" {
		return nil
	}
	p := filepath.Clean(dir)
	for {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("audit.sinkDir %s: %s is not a directory", dir, p)
		case err == nil:
			if aerr := unix.Access(p, unix.W_OK|unix.X_OK); aerr != nil {
				if p == filepath.Clean(dir) {
					return fmt.Errorf("audit.sinkDir %s is not writable (%w): sqlgated writes the checkpoint copies there", dir, aerr)
				}
				return fmt.Errorf("audit.sinkDir %s does not exist and cannot be created: %s is not writable (%w); mount the write-once store there "+
					"(in the Helm chart: extraVolumes and extraVolumeMounts)", dir, p, aerr)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR): // ENOTDIR: a file above, found next
			return fmt.Errorf("audit.sinkDir %s: %w", dir, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("audit.sinkDir %s: no existing directory above it", dir)
		}
		p = parent
	}
}
