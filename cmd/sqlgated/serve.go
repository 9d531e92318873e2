package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"  // control database: PostgreSQL
	_ "github.com/microsoft/go-mssqldb" // control database: SQL Server
	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/broker/sqlserver"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/internal/secretfile"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/web/api"
)

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlags("serve", stderr, "sqlgated serve --config FILE")
	path := fs.String("config", "", "configuration file (YAML)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	check := fs.Bool("check", false, "validate the configuration, the route catalog and the policy, then exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return &usageError{msg: "--config FILE is required"}
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	go logHangups(ctx, hangups, logger)
	cfg, catalog, err := loadServeConfig(*path)
	if *check {
		return checkServe(ctx, stderr, cfg, catalog, err)
	}
	if err != nil {
		return err
	}
	rc, err := resolveServe(ctx, cfg, catalog, logger)
	if err != nil {
		return err
	}
	rc.Logger = logger
	a, err := start(ctx, *rc)
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "sqlgated serving", append([]any{"http", rc.Listener.Addr().String(), "nats", rc.NATSURL, "routes", len(catalog.Subjects())}, runtimeAttrs(tuned.memLimitErr)...)...)
	err = a.wait(ctx)
	a.shutdown(context.Background())
	return err
}

// checkServe finishes serve --check: loadErr holds the problems of the
// configuration and the route catalog, and the policy the configuration
// names is checked as well, so that none hides another. serve would start
// with a policy that does not load (and deny every call until it is
// fixed); --check refuses it. The policy is checked against the catalog,
// or, when the catalog has problems, against the subjects and parameters
// its file names (opa.RoutesFromCatalog), valid or not.
func checkServe(ctx context.Context, stderr io.Writer, cfg *Config, catalog *route.Catalog, loadErr error) error {
	if cfg == nil || cfg.Policy.Dir == "" {
		return loadErr // the configuration does not decode, or names no policy (which loadErr says)
	}
	var routes []opa.RouteRef
	switch {
	case catalog != nil:
		routes = policyRoutes(catalog)
	case cfg.Routes != "":
		if data, err := os.ReadFile(cfg.Routes); err == nil {
			routes, _ = opa.RoutesFromCatalog(data) // nil when it does not parse: the policy's route references go unchecked
		}
	}
	errs := []error{loadErr}
	var revision string
	engine, err := opa.Open(ctx, opa.Config{Dir: cfg.Policy.Dir, EvalTimeout: cfg.Policy.EvalTimeout, Routes: routes})
	if err != nil {
		errs = append(errs, fmt.Errorf("policy %s: %w", cfg.Policy.Dir, err))
	} else {
		for _, w := range engine.Status().Warnings {
			fmt.Fprintf(stderr, "warning: policy: %s\n", w)
		}
		revision = engine.Revision()
		_ = engine.Close() // nothing to flush: it did not watch
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	budget, err := stopBudget(os.Getenv(stopBudgetEnv))
	if err != nil {
		return err
	}
	if bound := shutdownBound(catalog, cfg.HTTP.ShutdownDelay); bound > budget {
		why := fmt.Sprintf("the longest a call may run, %s, plus %s", longestCalls(catalog), shutdownMargin)
		if httpStopBound(cfg.HTTP.ShutdownDelay) > longestCalls(catalog)+drainMargin {
			why = fmt.Sprintf("http.shutdownDelay, %s, plus %s", cfg.HTTP.ShutdownDelay, bound-cfg.HTTP.ShutdownDelay)
		}
		fmt.Fprintf(stderr, "warning: a stop may take up to %s (%s), more than the %s the stop budget allows (%s, default %s: "+
			"the systemd unit's TimeoutStopSec, the Helm chart's terminationGracePeriodSeconds): raise them to at least %s, "+
			"or calls still running are cut off and repaired at the next start\n",
			bound, why, budget, stopBudgetEnv, defaultStopBudget, bound)
	}
	fmt.Fprintf(stderr, "configuration, %d routes and policy revision %.12s are valid\n", len(catalog.Subjects()), revision)
	return nil
}

// defaultStopBudget is how long the shipped systemd unit (TimeoutStopSec)
// and Helm chart (terminationGracePeriodSeconds) let sqlgated stop by
// default.
const defaultStopBudget = 90 * time.Second

// stopBudgetEnv names the variable that tells serve --check how long the
// service manager lets sqlgated stop (a Go duration such as 90s): the
// shipped unit and chart set it from their TimeoutStopSec and
// terminationGracePeriodSeconds.
const stopBudgetEnv = "SQLGATE_STOP_BUDGET"

// stopBudget is the stop budget that v, the value of stopBudgetEnv, sets:
// defaultStopBudget when it is empty.
func stopBudget(v string) (time.Duration, error) {
	if v == "" {
		return defaultStopBudget, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s must be a positive duration such as 90s, not %q", stopBudgetEnv, v)
	}
	return d, nil
}

// shutdownMargin is what a stop takes beyond the longest a call may run:
// the transports' margin (app.drainBound) and the audit log's last writes
// (app.shutdown's budget).
const shutdownMargin = drainMargin + lastWritesMargin

// httpStopBound is the longest the API's stop may take (app.shutdown,
// beside the transports' drain): the shutdown delay, then stopHTTP.
func httpStopBound(delay time.Duration) time.Duration {
	return delay + httpShutdownBound + httpHandlersBound
}

// shutdownBound is how long a stop may take with catalog and the HTTP
// shutdown delay: the calls accepted are answered within the longest a
// call may run (its route's timeout, three of them with batch:
// longestCall) and drainMargin, while the API serves for the delay and
// then stops; then the last audit writes follow.
func shutdownBound(catalog *route.Catalog, delay time.Duration) time.Duration {
	return max(longestCalls(catalog)+drainMargin, httpStopBound(delay)) + lastWritesMargin
}

// cliDiscovery is what GET /api/v1/config tells the CLI: identity.cli,
// with the default scopes and the service scopes derived from them when
// they are not configured.
func cliDiscovery(cfg *Config) api.Discovery {
	cli := cfg.Identity.CLI
	d := api.Discovery{
		Issuer: cli.Issuer, ClientID: cli.ClientID, Audience: cli.Audience,
		Scopes: cli.Scopes, ServiceScopes: cli.ServiceScopes, NATSURL: cfg.NATS.AdvertiseURL, Version: version,
	}
	if len(d.Scopes) == 0 {
		d.Scopes = oidc.DefaultScopes
	}
	if len(d.ServiceScopes) == 0 {
		d.ServiceScopes = oidc.DefaultServiceScopes(d.Scopes)
	}
	d.AuthContext = cliAuthContext(cli.Issuer, cfg.Identity.Issuers)
	return d
}

// cliAuthContext is the Entra authentication context the CLI's sign-ins
// ask for (oidc.SignInAuthContext) of the issuer entry the CLI signs in
// with (cliSignsInWith). "" when no entry matches or it asks for none.
func cliAuthContext(cliIssuer string, issuers []oidc.IssuerConfig) string {
	for _, ic := range issuers {
		if ac := oidc.SignInAuthContext(ic); ac != "" && cliSignsInWith(cliIssuer, ic) {
			return ac
		}
	}
	return ""
}

// resolveServe turns the configuration into a runtime configuration: it
// reads secrets, opens databases and the listener.
func resolveServe(ctx context.Context, cfg *Config, catalog *route.Catalog, logger *slog.Logger) (_ *runtimeConfig, err error) {
	// rc is not the named result: an error return sets that to nil, and the
	// deferred cleanup below must still see what was opened.
	rc := &runtimeConfig{
		Instance: cfg.Instance, AdminGroups: cfg.HTTP.AdminGroups, AuditorGroups: cfg.HTTP.AuditorGroups,
		Catalog: catalog, Executors: map[string]broker.Executor{}, Identity: cfg.Identity.Config,
		PolicyDir: cfg.Policy.Dir, Watch: cfg.Policy.Watch == nil || *cfg.Policy.Watch, EvalTimout: cfg.Policy.EvalTimeout,
		NATSURL: cfg.NATS.URL, NATSWorkers: cfg.NATS.Workers, NATSQueueLen: cfg.NATS.QueueLen, AsyncMaxAge: cfg.NATS.AsyncMaxAge,
		AsyncReplicas: cfg.NATS.AsyncReplicas, Callout: cfg.NATS.Callout == nil || *cfg.NATS.Callout,
		NATSTTL: cfg.Credentials.NATSTTL, MaxTTL: cfg.Credentials.MaxTTL, MaxNATSCredentials: cfg.Credentials.MaxNATSCredentialsPerPrincipal,
		SinkDir:            cfg.Audit.SinkDir,
		Discovery:          cliDiscovery(cfg),
		MaxHTTPConnections: cfg.HTTP.MaxConnections,
		ShutdownDelay:      cfg.HTTP.ShutdownDelay,
	}
	defer func() {
		if err != nil {
			closeExecutors(rc.Executors)
			if rc.ControlDB != nil {
				_ = rc.ControlDB.Close()
			}
		}
	}()
	rc.LoginIssuers = map[string]broker.SQLLoginIssuer{}
	rc.IdempotencyRetention = map[string]time.Duration{}
	// The databases open together: one that does not answer holds the
	// start for its connection timeout once, not once per database.
	type opened struct {
		name string
		ex   broker.Executor
		iss  broker.SQLLoginIssuer
		err  error
	}
	results := make([]opened, len(cfg.Databases))
	var wg sync.WaitGroup
	for i, d := range cfg.Databases {
		wg.Go(func() {
			o := &results[i]
			o.name, o.ex, o.iss, o.err = openDatabase(ctx, d, cfg.Credentials.LoginPrefix, logger)
		})
	}
	wg.Wait()
	for i, o := range results {
		if o.ex != nil {
			rc.Executors[o.name] = o.ex // closed with the others on an error
		}
		if o.err != nil {
			if err == nil { // the first in the configuration's order
				err = fmt.Errorf("database %s: %w", o.name, o.err)
			}
			continue
		}
		rc.IdempotencyRetention[o.name] = cfg.Databases[i].idempotencyRetention()
		if o.iss != nil {
			rc.LoginIssuers[o.name] = o.iss
		}
	}
	if err != nil {
		return nil, err
	}
	rc.Leases = broker.LeasesConfig{
		Instance: cfg.Instance, DefaultTTL: cfg.Credentials.SQLTTL, LoginPrefix: cfg.Credentials.LoginPrefix,
		MaxLeasesPerPrincipal: cfg.Credentials.MaxLeasesPerPrincipal, Retention: cfg.Credentials.leaseRetention(),
	}
	rc.ReaperInterval = cfg.Credentials.ReaperInterval
	if rc.ControlDB, rc.ControlDialect, err = openControl(cfg.Control); err != nil {
		return nil, err
	}
	skey, err := loadOrCreate(cfg.Audit.SigningKeyFile, func() (string, error) {
		s, _, err := audit.GenerateKey(rand.Reader, cfg.Audit.Origin)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	pk, previous, err := auditParamKeys(cfg.Audit)
	if err != nil {
		return nil, err
	}
	rc.Audit = audit.Config{
		Origin: cfg.Audit.Origin, Instance: cfg.Instance, Signer: signer, PreviousKeys: cfg.Audit.PreviousVerifierKeys,
		ParamKey: pk, PreviousParamKeys: previous,
		CheckpointInterval: cfg.Audit.CheckpointInterval, Heartbeat: cfg.Audit.Heartbeat,
		Retention: cfg.Audit.Retention, InputRetention: cfg.Audit.InputRetention,
	}
	if cfg.NATS.CAFile != "" {
		// A private CA for a tls:// server: nats.go reads the file at
		// connect, so a missing or broken one is an error there; read it
		// here to name the key.
		if _, err := os.ReadFile(cfg.NATS.CAFile); err != nil {
			return nil, fmt.Errorf("nats.caFile: %w", err)
		}
		rc.NATSConnect = append(rc.NATSConnect, nats.RootCAs(cfg.NATS.CAFile))
	}
	if rc.NATSKeys, err = loadNATSKeys(cfg.NATS.KeysDir); err != nil {
		return nil, err
	}
	if w := cfg.Identity.Web; w != nil {
		secret, err := readSecretRef(w.ClientSecretFile, w.ClientSecretEnv)
		if err != nil {
			return nil, fmt.Errorf("identity.web client secret: %w", err)
		}
		key, err := readCookieKey(w.CookieKeyFile)
		if err != nil {
			return nil, err
		}
		rc.WebLogin = &oidc.WebLoginConfig{
			Issuer: w.Issuer, ClientID: w.ClientID, ClientSecret: secret, Scopes: w.Scopes,
			RedirectURL: webRedirectURL(cfg.HTTP.PublicURL), CookieKey: key,
			AllowPlainHTTP: cfg.HTTP.AllowPlaintext,
		}
	}
	// A proxy in front may end TLS: an https publicURL says browsers use it.
	rc.BrowserTLS = cfg.HTTP.TLSCertFile != "" || isHTTPSURL(cfg.HTTP.PublicURL)
	if rc.TLSCert, err = loadHTTPCert(cfg.HTTP); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	if rc.Listener, err = lc.Listen(ctx, "tcp", cfg.HTTP.Listen); err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	if cfg.HTTP.MetricsListen != "" {
		if rc.MetricsListener, err = lc.Listen(ctx, "tcp", cfg.HTTP.MetricsListen); err != nil {
			_ = rc.Listener.Close()
			return nil, fmt.Errorf("http metrics listen: %w", err)
		}
	}
	return rc, nil
}

// webRedirectURL is the dashboard's OIDC redirect URL on publicURL: its
// path /auth/callback, whether publicURL ends with a slash or not (the
// provider compares the registered URL exactly: host//auth/callback is
// another one).
func webRedirectURL(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + "/auth/callback"
}

// openDatabase opens a target database and its SQL login issuer (nil when
// it issues no logins). A database the adapter cannot reach
// ([broker.ErrUnavailable] from its Open) does not fail the start: it is
// returned pending (lazyDB, lazyIssuer), to be opened in the background
// once the instance runs. Any other error is a configuration error. The
// adapter and the login issuer log to logger (the adapters' warnings: an
// insecure transport accepted, PostgreSQL 15's CREATEROLE).
func openDatabase(ctx context.Context, d DatabaseConfig, loginPrefix string, logger *slog.Logger) (string, broker.Executor, broker.SQLLoginIssuer, error) {
	name := d.name()
	d = d.withLogger(logger.With("component", "database", "database", name))
	open := func(ctx context.Context) (*openedDB, error) {
		octx, cancel := context.WithTimeout(ctx, openAttemptTimeout)
		defer cancel()
		ex, err := openExecutor(octx, d)
		if err != nil {
			return nil, err
		}
		iss, err := loginIssuer(d, ex, name, loginPrefix)
		if err == nil {
			err = checkIssuerServer(octx, iss)
		}
		if err != nil {
			newOpenedDB(ex, nil).close()
			return nil, fmt.Errorf("short-lived logins: %w", err)
		}
		return newOpenedDB(ex, iss), nil
	}
	o, err := open(ctx)
	switch {
	case err == nil:
		return name, o.ex, o.iss, nil
	case !errors.Is(err, broker.ErrUnavailable) || ctx.Err() != nil:
		return name, nil, nil, err
	}
	info, batches, derr := describeDatabase(d)
	if derr != nil {
		return name, nil, nil, derr
	}
	l := newLazyDB(name, info, open, err)
	if d.Postgres != nil {
		l.routeBatcher = (*postgres.Executor)(nil) // BatchesRoute reads only the route
	}
	var iss broker.SQLLoginIssuer
	if d.PostgresLogins != nil || d.SQLServerLogins != nil {
		iss = lazyIssuer{l}
	}
	return name, l.executor(batches), iss, nil
}

// withLogger returns d with its adapter's and login issuer's logger set
// (copies: the configuration is not changed).
func (d DatabaseConfig) withLogger(l *slog.Logger) DatabaseConfig {
	switch {
	case d.Postgres != nil:
		c := *d.Postgres
		c.Logger = l
		d.Postgres = &c
	case d.SQLServer != nil:
		c := *d.SQLServer
		c.Logger = l
		d.SQLServer = &c
	}
	if d.PostgresLogins != nil {
		c := *d.PostgresLogins
		c.Logger = l
		d.PostgresLogins = &c
	}
	return d
}

// checkIssuerServer has a PostgreSQL login issuer read the server's
// version, so its warning about PostgreSQL 15 and earlier is logged at
// start rather than at the first login.
func checkIssuerServer(ctx context.Context, iss broker.SQLLoginIssuer) error {
	if p, ok := iss.(*postgres.LoginIssuer); ok {
		return p.CheckServer(ctx)
	}
	return nil
}

// openExecutor opens the adapter of d's dialect.
func openExecutor(ctx context.Context, d DatabaseConfig) (broker.Executor, error) {
	switch {
	case d.SQLite != nil:
		// Its idempotency records hold the calls' results: not for other
		// users.
		if err := privateSQLiteFile(d.SQLite.Path); err != nil {
			return nil, fmt.Errorf("sqlite database %s: %w", d.SQLite.Name, err)
		}
		return sqlite.Open(ctx, *d.SQLite)
	case d.Postgres != nil:
		// pgx reads the client certificate's key whatever its mode.
		if d.Postgres.DSNFile != "" || d.Postgres.DSNEnv != "" || d.Postgres.DSN != "" {
			dsn := d.Postgres.DSN
			if dsn == "" {
				var err error
				if dsn, err = readSecretRef(d.Postgres.DSNFile, d.Postgres.DSNEnv); err != nil {
					return nil, fmt.Errorf("postgres database %s: connection string: %w", d.Postgres.Name, err)
				}
			}
			if err := checkDSNKeyFile(dsn); err != nil {
				return nil, fmt.Errorf("postgres database %s: %w", d.Postgres.Name, err)
			}
		}
		return postgres.Open(ctx, *d.Postgres)
	case d.SQLServer != nil:
		// The certificate file holds the client's private key, and the
		// driver reads it whatever its mode.
		if a := d.SQLServer.AzureAD; a != nil && a.ClientCertPath != "" {
			if err := secretfile.Check(a.ClientCertPath, "the private key of a client certificate"); err != nil {
				return nil, fmt.Errorf("sqlserver database %s: azureAD.clientCertPath: %w", d.SQLServer.Name, err)
			}
		}
		return sqlserver.Open(ctx, *d.SQLServer)
	}
	return nil, errors.New("no database dialect set")
}

// describeDatabase returns how the adapter of a database that is not open
// describes it, from the configuration, and whether it runs batches.
func describeDatabase(d DatabaseConfig) (broker.DatabaseInfo, bool, error) {
	switch {
	case d.Postgres != nil:
		_, batches := any((*postgres.Executor)(nil)).(broker.BatchExecutor)
		info, err := postgres.Describe(*d.Postgres)
		return info, batches, err
	case d.SQLServer != nil:
		_, batches := any((*sqlserver.Executor)(nil)).(broker.BatchExecutor)
		info, err := sqlserver.Describe(*d.SQLServer)
		return info, batches, err
	}
	return broker.DatabaseInfo{}, false, errors.New("this dialect cannot be opened later")
}

func openControl(c ControlConfig) (*sql.DB, string, error) {
	switch c.Dialect {
	case sqlstore.SQLite:
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return nil, "", err
		}
		// The file holds the audit log's decision inputs (parameter values,
		// emails): no other user may read it, nor its -wal and -shm files,
		// which SQLite creates with the database file's mode.
		if err := privateSQLiteFile(c.Path); err != nil {
			return nil, "", fmt.Errorf("control database: %w", err)
		}
		db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(c.Path))
		return db, c.Dialect, err
	case sqlstore.Postgres, sqlstore.SQLServer:
		dsn, err := readSecretRef(c.DSNFile, c.DSNEnv)
		if err != nil {
			return nil, "", fmt.Errorf("control database DSN: %w", err)
		}
		// The control database holds credentials' records, the audit log
		// and the decision inputs: its login and sessions must not cross
		// the network in clear text or to an impostor.
		if c.Dialect == sqlstore.Postgres {
			// Before anything parses the string: pgx reads the client
			// certificate's key whatever its mode.
			if err := checkDSNKeyFile(dsn); err != nil {
				return nil, "", fmt.Errorf("control database: %w", err)
			}
		}
		if err := c.checkTransport(dsn); err != nil {
			return nil, "", err
		}
		driver := "pgx"
		if c.Dialect == sqlstore.SQLServer {
			driver = "sqlserver"
		}
		db, err := sql.Open(driver, dsn)
		if err != nil {
			return nil, "", errors.New("control database: invalid DSN") // the DSN may hold a password: never echo it
		}
		return db, c.Dialect, nil
	}
	return nil, "", fmt.Errorf("control.dialect %q", c.Dialect)
}

// loginIssuer builds the short-lived login provisioner of a database, if
// configured.
func loginIssuer(d DatabaseConfig, ex broker.Executor, name, prefix string) (broker.SQLLoginIssuer, error) {
	switch {
	case d.PostgresLogins != nil:
		c := *d.PostgresLogins
		if c.Name == "" {
			c.Name = name
		}
		if c.LoginPrefix == "" {
			c.LoginPrefix = prefix
		}
		return postgres.NewLoginIssuer(ex.(*postgres.Executor).Pool(), c)
	case d.SQLServerLogins != nil:
		c := *d.SQLServerLogins
		if c.Name == "" {
			c.Name = name
		}
		if c.LoginPrefix == "" {
			c.LoginPrefix = prefix
		}
		db := ex.(*sqlserver.Executor).DB()
		if db == nil {
			return nil, errors.New("the onBehalfOf connection mode has no broker connection to create logins with")
		}
		return sqlserver.NewLoginIssuer(db, c)
	}
	return nil, nil
}

func closeExecutors(m map[string]broker.Executor) {
	for _, ex := range m {
		closeExecutor(ex)
	}
}

// closeExecutor closes an executor's pool, whichever form its Close has
// (the PostgreSQL executor's returns nothing).
func closeExecutor(ex broker.Executor) {
	switch c := ex.(type) {
	case interface{ Close() error }:
		_ = c.Close()
	case interface{ Close() }:
		c.Close()
	}
}

func runNATSSetup(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nats-setup", stderr, "sqlgated nats-setup --out DIR --keys DIR --routes FILE [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE]")
	out := fs.String("out", "", "directory for nats-server.conf, operator and account JWTs and sentinel.creds")
	keysDir := fs.String("keys", "", "directory of sqlgated's NATS seeds (created on first run, 0600; point nats.keysDir here)")
	routes := fs.String("routes", "", "route catalog whose subjects the accounts export and import")
	listen := fs.String("listen", "0.0.0.0:4222", "the NATS server's client listen address")
	resolverDir := fs.String("resolver-dir", "", "account resolver directory on the NATS host (default OUT/jwt)")
	jsDir := fs.String("jetstream-dir", "", "JetStream store directory on the NATS host (default OUT/jetstream)")
	tlsCert := fs.String("tls-cert", "", "the NATS server's TLS certificate (PEM) on the NATS host: clients and sqlgated connect with tls://")
	tlsKey := fs.String("tls-key", "", "the private key of --tls-cert on the NATS host (readable by the nats-server user only)")
	systemCreds := fs.Bool("system-creds", false, "also write OUT/system-user.creds (0600): the system user, for looking up the account JWTs the servers hold")
	monitorCreds := fs.Bool("monitor-creds", false, "also write OUT/monitor.creds (0600): a broker-account user that may only observe the micro service (nats micro ls|info|stats)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return &usageError{msg: "--tls-cert and --tls-key go together"}
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"--out", *out}, {"--keys", *keysDir}, {"--routes", *routes}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return &usageError{msg: "missing " + strings.Join(missing, ", ") + " (--out, --keys and --routes are all required)"}
	}
	catalog, err := route.LoadFile(*routes)
	if err != nil {
		return err
	}
	keys, err := natsauth.LoadOrCreateKeys(*keysDir)
	if err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(*listen)
	if err != nil {
		return &usageError{msg: "--listen: " + err.Error()}
	}
	var port int
	if _, err := fmt.Sscan(portText, &port); err != nil {
		return &usageError{msg: "--listen: bad port"}
	}
	conf, err := natsauth.WriteSetup(*out, keys, natsauth.SetupConfig{Server: natsauth.ServerConfig{
		Host: host, Port: port, ResolverDir: *resolverDir, JetStreamDir: *jsDir,
		TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey,
		Subjects: catalog.Subjects(), Emits: emits(catalog),
	}, SystemCreds: *systemCreds, MonitorCreds: *monitorCreds})
	if err != nil {
		return err
	}
	pub := keys.Public()
	fmt.Fprintf(stdout, "wrote %s\n  start it with: nats-server -c %s\n  seeds for sqlgated: %s (0600, set nats.keysDir)\n  operator %s\n  users account %s\n", conf, conf, *keysDir, pub.Operator, pub.Users)
	if fi, err := os.Stat(filepath.Dir(conf)); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
		fmt.Fprintf(stdout, "  note: %s is mode %04o: the nats-server user reads it only if it owns it (chmod 0755: it holds nothing secret)\n",
			filepath.Dir(conf), fi.Mode().Perm())
	}
	if *tlsCert == "" {
		fmt.Fprintf(stdout, "  no TLS: clients send their access tokens in the clear; sqlgated refuses a nats:// URL to another host "+
			"unless nats.allowPlaintext is set (pass --tls-cert and --tls-key)\n")
	}
	return nil
}

// isHTTPSURL reports whether raw is an https URL. The scheme is compared
// without regard to case, as the config check and the sign-in code read it:
// "HTTPS://host" must turn Secure cookies and HSTS on too.
func isHTTPSURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.EqualFold(u.Scheme, "https")
}

// auditParamKeys reads the parameter key (created on first start) and the
// earlier ones, which must exist.
func auditParamKeys(c AuditConfig) (audit.ParamKey, []audit.ParamKey, error) {
	pk, err := loadParamKey(c.ParamKeyFile, true)
	if err != nil {
		return audit.ParamKey{}, nil, err
	}
	var previous []audit.ParamKey
	for i, f := range c.PreviousParamKeyFiles {
		k, err := loadParamKey(f, false)
		if err != nil {
			return audit.ParamKey{}, nil, fmt.Errorf("audit.previousParamKeyFiles[%d]: %w", i, err)
		}
		if k.ID == pk.ID {
			return audit.ParamKey{}, nil, fmt.Errorf("audit.previousParamKeyFiles[%d]: key id %q is the current parameter key's: give a rotated key a new id", i, k.ID)
		}
		for j, p := range previous {
			if p.ID == k.ID {
				return audit.ParamKey{}, nil, fmt.Errorf("audit.previousParamKeyFiles[%d]: key id %q is also the id of audit.previousParamKeyFiles[%d]: every parameter key needs its own id", i, k.ID, j)
			}
		}
		previous = append(previous, k)
	}
	return pk, previous, nil
}
