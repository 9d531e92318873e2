package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the embedded databases

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/internal/filelock"
	"github.com/sqlgate/sqlgate/web/api"
)

//go:embed demo/routes.yaml
var demoRoutes []byte

//go:embed demo/orders.sql
var demoSchema string

// Default dev ports: chosen away from common services (NATS's own 4222,
// PostgreSQL, web servers). A taken port is reported and replaced.
const (
	defaultDevHTTP = "127.0.0.1:8470"
	defaultDevNATS = "127.0.0.1:4470"
	cliClientID    = "sqlgate-cli"
	webClientID    = "sqlgate-web"
	serviceClient  = "orders-service"
)

// devState is DIR/dev.json: what scripts need to drive the demo, and the
// generated secrets that must survive a restart. The file is 0600.
type devState struct {
	HTTPURL  string    `json:"http_url"`
	NATSURL  string    `json:"nats_url"`
	Issuer   string    `json:"issuer"`
	DataDir  string    `json:"data_dir"`
	Users    []devUser `json:"users"`
	CLI      string    `json:"cli_client_id"`
	Service  devClient `json:"service_client"`
	Web      devClient `json:"web_client"`
	AuditKey string    `json:"audit_verifier_key"`
	// AuditOrigin is the audit log's origin (the signing key's name), fixed
	// at the first start: later starts keep it, whatever the host is called.
	AuditOrigin string `json:"audit_origin"`
	// AuditKeys are the verifier keys of every signing key this directory's
	// log has used, the current one included. They are passed to the log as
	// previous keys, so a lost secrets/audit-signing.key is a key rotation
	// (a new key, recorded in the log) instead of a log that refuses to start.
	AuditKeys []string  `json:"audit_verifier_keys"`
	Sentinel  string    `json:"sentinel_creds"`
	Started   time.Time `json:"started"`
	PID       int       `json:"pid"`
}

type devUser struct {
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
}

type devClient struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// demoUsers are the demo accounts and what the demo policy lets them do.
var demoUsers = []struct {
	name, group, role string
	mfa               bool
}{
	{"alice", "sales", "creates, reads and cancels orders (amount up to 1000)", true},
	{"bob", "support", "reads orders", false},
	{"carol", "auditors", "calls nothing; reads and verifies the audit log", true},
	{"dave", "security", "calls nothing; evaluates policies in the dashboard", true},
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runDevOn(ctx, args, stdout, stderr, hostname())
}

// runDevOn is runDev on a host named host (the first start's name is the
// audit origin's).
func runDevOn(ctx context.Context, args []string, stdout, stderr io.Writer, host string) (err error) {
	fs := newFlags("dev", stderr, "sqlgated dev [--data-dir DIR] [--http ADDR] [--nats ADDR]")
	dataDir := fs.String("data-dir", ".sqlgate", "directory for keys, databases, policies and dev.json (reused on the next start)")
	httpAddr := fs.String("http", "", "HTTP listen address for the API, dashboard and OpenID provider, on loopback only (default "+defaultDevHTTP+
		", or the previous run's); sqlgated serve serves other hosts")
	natsAddr := fs.String("nats", "", "NATS listen address, on loopback only (default "+defaultDevNATS+", or the previous run's)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Before anything is created: a non-loopback address fails later.
	if err := checkDevListen("http", *httpAddr); err != nil {
		return err
	}
	if err := checkDevListen("nats", *natsAddr); err != nil {
		return err
	}
	logger, lerr := newLogger(stderr, *logLevel)
	if lerr != nil {
		return &usageError{msg: lerr.Error()}
	}
	logger.InfoContext(ctx, "go runtime", runtimeAttrs(tuned.memLimitErr)...)
	started := time.Now()
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// One dev instance per data directory, before anything touches it: two
	// would share the NATS store, the databases and the audit log.
	unlock, err := filelock.Lock(filepath.Join(dir, "dev.lock"))
	if errors.Is(err, filelock.ErrLocked) {
		return fmt.Errorf("another sqlgated dev is running with the data directory %s: stop it, or use another data directory "+
			"(sqlgated dev --data-dir DIR, or make run DATA_DIR=DIR)", dir)
	}
	if err != nil {
		return err
	}
	defer func() { _ = unlock() }()
	prev := loadDevState(dir)

	ln, httpURL, note, err := listenDev(ctx, *httpAddr, prevDevAddr(prev.HTTPURL), defaultDevHTTP)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // on success the HTTP server owns (and closes) the listener
			_ = ln.Close()
		}
	}()
	if note != "" {
		fmt.Fprintln(stdout, note)
	}
	natsHost, natsPort, note, err := pickDevPort(ctx, *natsAddr, prevDevAddr(prev.NATSURL), defaultDevNATS)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(stdout, note)
	}

	st := devSecrets(prev)
	st.HTTPURL, st.Issuer, st.DataDir, st.CLI = httpURL, httpURL+"/idp", dir, cliClientID

	idp, err := devIdentityProvider(dir, st, logger)
	if err != nil {
		return err
	}
	catalog, executors, err := devDatabases(ctx, dir, logger)
	if err != nil {
		return err
	}
	policyDir, err := devPolicy(dir)
	if err != nil {
		return err
	}

	keys, err := natsauth.LoadOrCreateKeys(filepath.Join(dir, "secrets", "nats"))
	if err != nil {
		return fmt.Errorf("nats keys: %w", err)
	}
	ns, err := startEmbeddedNATS(keys, natsHost, natsPort, filepath.Join(dir, "nats"), catalog)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	st.NATSURL = ns.ClientURL()
	st.Sentinel = filepath.Join(dir, "sentinel.creds")
	if creds, err := keys.SentinelCreds(); err == nil {
		if err := os.WriteFile(st.Sentinel, creds, 0o600); err != nil {
			return err
		}
	}

	st.AuditOrigin = devAuditOrigin(dir, prev, host)
	signer, paramKey, err := devAuditKeys(dir, st.AuditOrigin)
	if err != nil {
		return err
	}
	st.AuditKey = signer.VerifierKey()
	st.AuditKeys = devAuditKeyHistory(prev, st.AuditKey)
	if err := privateSQLiteFile(filepath.Join(dir, "control.db")); err != nil { // decision inputs: not for other users
		return err
	}
	control, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db")))
	if err != nil {
		return err
	}

	// The login cookie key protects only in-flight sign-ins: a new one per
	// start is fine (sessions live in memory anyway).
	cookieKey := make([]byte, 32)
	if _, err := rand.Read(cookieKey); err != nil {
		return err
	}
	rc := runtimeConfig{
		Instance: "dev", Logger: logger, Listener: ln,
		Mounts:      map[string]http.Handler{"/idp/": idp},
		AdminGroups: []string{"security"}, AuditorGroups: []string{"auditors", "security"},
		Discovery: api.Discovery{
			Issuer: st.Issuer, ClientID: cliClientID, Scopes: oidc.DefaultScopes, NATSURL: st.NATSURL, Version: version,
		},
		Catalog: catalog, Executors: executors,
		ControlDB: control, ControlDialect: sqlstore.SQLite,
		Audit: audit.Config{
			Origin: st.AuditOrigin, Instance: "dev", Signer: signer, ParamKey: paramKey, PreviousKeys: st.AuditKeys,
			// Export checkpoints often, so the walkthrough's --trusted-checkpoint has copies.
			SinkInterval: 5 * time.Second,
		},
		SinkDir:   filepath.Join(dir, "checkpoints"),
		PolicyDir: policyDir, Watch: true,
		Identity: oidc.Config{Issuers: []oidc.IssuerConfig{{
			Name: "dev", Issuer: st.Issuer, Preset: oidc.PresetGeneric,
			Audiences: []string{"sqlgate", cliClientID, webClientID},
		}}},
		WebLogin: &oidc.WebLoginConfig{
			Issuer: "dev", RedirectURL: httpURL + "/auth/callback", ClientID: webClientID,
			ClientSecret: st.Web.Secret, CookieKey: cookieKey,
		},
		NATSKeys: keys, NATSURL: st.NATSURL, Callout: true,
	}
	a, err := start(ctx, rc)
	if err != nil {
		return err
	}
	st.Started, st.PID = started, os.Getpid()
	if err := writeDemoFiles(dir, st); err != nil {
		a.shutdown(context.Background())
		return err
	}
	if err := saveDevState(dir, st); err != nil {
		a.shutdown(context.Background())
		return err
	}
	// The first policy load is done: a broken policy (the engine then
	// denies everything until a fix loads) changes what the banner says.
	var policyErr error
	if ps := a.engine.Status(); ps.Revision == "" {
		policyErr = cmp.Or(ps.LastError, errors.New("no policy loaded"))
	}
	printDevBanner(stdout, st, time.Since(started), policyErr)
	err = a.wait(ctx)
	fmt.Fprintln(stdout, "\nsqlgated dev: shutting down")
	a.shutdown(context.Background())
	return err
}
