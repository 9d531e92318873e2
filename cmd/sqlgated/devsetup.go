package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/internal/sqliteuri"
	"github.com/sqlgate/sqlgate/policy/rules"
)

func loadDevState(dir string) devState {
	var st devState
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err == nil {
		_ = json.Unmarshal(b, &st) // a damaged file only loses the previous ports and passwords
	}
	return st
}

func saveDevState(dir string, st devState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".dev.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write dev.json: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "dev.json"))
}

// prevDevAddr returns host:port of the previous run's URL u for reuse, ""
// when it is not on loopback (a data directory from before dev refused
// other addresses): dev serves loopback only ([checkDevListen]).
func prevDevAddr(u string) string {
	p, err := url.Parse(u)
	if err != nil || !loopbackHost(p.Hostname()) {
		return ""
	}
	return p.Host
}

// checkDevListen refuses an address for sqlgated dev's --http or --nats
// (flag) that is not on loopback, before anything is created. dev's OpenID
// provider, dashboard and API speak plain HTTP and its NATS server plain
// NATS: the issuer and the dashboard's sign-in accept plain HTTP on
// loopback only (a non-loopback --http would fail only at start, after
// the data directory, NATS and the audit log were set up), and tokens and
// credentials sent to NATS would cross the network in the clear. Serving
// other hosts is sqlgated serve's job, with TLS.
func checkDevListen(flag, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--%s %q: want host:port, e.g. 127.0.0.1:0", flag, addr)}
	}
	if !loopbackHost(host) {
		return &usageError{msg: fmt.Sprintf("--%s %s: sqlgated dev serves on loopback only (127.0.0.1, ::1 or localhost), "+
			"because its OpenID provider, dashboard and NATS are unencrypted; to serve other hosts, run sqlgated serve "+
			"with a configuration (docs/operations.md)", flag, addr)}
	}
	return nil
}

// listenDev opens the HTTP listener: the flag's address if given (it must
// be free), else the previous run's or the default, else any free port on
// the same host — saying so.
func listenDev(ctx context.Context, flagAddr, prevAddr, def string) (net.Listener, string, string, error) {
	var lc net.ListenConfig
	if flagAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", flagAddr)
		if err != nil {
			return nil, "", "", fmt.Errorf("--http %s: %w", flagAddr, err)
		}
		return ln, "http://" + ln.Addr().String(), "", nil
	}
	want := def
	if prevAddr != "" {
		want = prevAddr
	}
	ln, err := lc.Listen(ctx, "tcp", want)
	if err == nil {
		return ln, "http://" + ln.Addr().String(), "", nil
	}
	host, _, _ := net.SplitHostPort(want)
	ln, err2 := lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return nil, "", "", fmt.Errorf("listen for HTTP: %w", err2)
	}
	note := fmt.Sprintf("HTTP port %s is taken (%v); using %s instead", want, errors.Unwrap(err), ln.Addr())
	return ln, "http://" + ln.Addr().String(), note, nil
}

// pickDevPort chooses the NATS address the same way; the embedded server
// binds it right after.
func pickDevPort(ctx context.Context, flagAddr, prevAddr, def string) (string, int, string, error) {
	var lc net.ListenConfig
	want, explicit := flagAddr, flagAddr != ""
	if want == "" {
		want = def
		if prevAddr != "" {
			want = prevAddr
		}
	}
	host, portText, err := net.SplitHostPort(want)
	if err != nil {
		return "", 0, "", fmt.Errorf("NATS address %q: %w", want, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", 0, "", fmt.Errorf("NATS address %q: bad port", want)
	}
	if port == 0 {
		return host, -1, "", nil // any free port, chosen by the server
	}
	ln, err := lc.Listen(ctx, "tcp", want)
	if err == nil {
		_ = ln.Close() // only probing: the embedded server binds it next
		return host, port, "", nil
	}
	if explicit {
		return "", 0, "", fmt.Errorf("--nats %s: %w", want, err)
	}
	ln, err2 := lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return "", 0, "", fmt.Errorf("find a free NATS port: %w", err2)
	}
	free := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // only probing: the embedded server binds it next
	note := fmt.Sprintf("NATS port %s is taken (another NATS server?); using %s:%d instead", want, host, free)
	return host, free, note, nil
}

// devSecrets fills in the demo passwords and client secrets, keeping those
// of the previous run so that scripts and saved sign-ins keep working.
func devSecrets(prev devState) devState {
	st := devState{Users: make([]devUser, 0, len(demoUsers))}
	old := map[string]devUser{}
	for _, u := range prev.Users {
		old[u.Name] = u
	}
	for _, d := range demoUsers {
		pw := old[d.name].Password
		if pw == "" {
			pw = randomSecret(12)
		}
		st.Users = append(st.Users, devUser{Name: d.name, Password: pw, Email: d.name + "@example.com", Groups: []string{d.group}})
	}
	st.Service = prev.Service
	if st.Service.ID == "" || st.Service.Secret == "" {
		st.Service = devClient{ID: serviceClient, Secret: randomSecret(24)}
	}
	st.Web = devClient{ID: webClientID, Secret: randomSecret(24)}
	return st
}

// writeDemoFiles writes DIR/demo/<user>.password and DIR/demo/audit.vkey so
// that the README walkthrough can be pasted as is
// (`--password-stdin < .sqlgate/demo/alice.password`), and
// DIR/demo/audit.vkeys: every verifier key the log has used, one per line,
// for `--keys-file` once the log has more than one (after a lost dev key).
func writeDemoFiles(dir string, st devState) error {
	demo := filepath.Join(dir, "demo")
	if err := os.MkdirAll(demo, 0o700); err != nil {
		return err
	}
	for _, u := range st.Users {
		if err := os.WriteFile(filepath.Join(demo, u.Name+".password"), []byte(u.Password+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(demo, "audit.vkey"), []byte(st.AuditKey+"\n"), 0o600); err != nil {
		return err
	}
	keys := st.AuditKeys
	if len(keys) == 0 {
		keys = []string{st.AuditKey}
	}
	return os.WriteFile(filepath.Join(demo, "audit.vkeys"), []byte(strings.Join(keys, "\n")+"\n"), 0o600)
}

func randomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func devIdentityProvider(dir string, st devState, logger *slog.Logger) (*devidp.Provider, error) {
	users := make([]devidp.User, 0, len(st.Users))
	for i, u := range st.Users {
		users = append(users, devidp.User{
			Username: u.Name, Password: u.Password, Email: u.Email, Name: strings.ToUpper(u.Name[:1]) + u.Name[1:],
			Groups: u.Groups, MFA: demoUsers[i].mfa,
		})
	}
	return devidp.Open(filepath.Join(dir, "secrets", "idp-key.pem"),
		devidp.WithIssuer(st.Issuer),
		devidp.WithAudience("sqlgate"),
		devidp.WithUsers(users...),
		devidp.WithClients(
			devidp.Client{ID: cliClientID, Name: "sqlgate CLI", RedirectURIs: []string{"http://127.0.0.1/callback"}},
			devidp.Client{ID: webClientID, Name: "sqlgate dashboard", Secret: st.Web.Secret, RedirectURIs: []string{st.HTTPURL + "/auth/callback"}},
			devidp.Client{
				ID: serviceClient, Name: "orders service", Secret: st.Service.Secret, Roles: []string{"orders.writer"},
				Grants: []string{"client_credentials"},
			},
		),
		devidp.WithLogger(logger.With("component", "devidp")),
	)
}

// devDatabases creates the demo orders database (first start), writes the
// demo route catalog if there is none, and opens the SQLite executor.
func devDatabases(ctx context.Context, dir string, logger *slog.Logger) (*route.Catalog, map[string]broker.Executor, error) {
	routesPath := filepath.Join(dir, "routes.yaml")
	if _, err := os.Stat(routesPath); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(routesPath, demoRoutes, 0o600); err != nil {
			return nil, nil, err
		}
	}
	catalog, err := route.LoadFile(routesPath)
	if err != nil {
		return nil, nil, err
	}
	dbPath := filepath.Join(dir, "orders.db")
	if err := privateSQLiteFile(dbPath); err != nil { // call results: not for other users
		return nil, nil, err
	}
	if err := createDemoDB(ctx, dbPath); err != nil {
		return nil, nil, err
	}
	ex, err := sqlite.Open(ctx, sqlite.Config{Name: "orders", Path: dbPath, Logger: logger.With("component", "sqlite")})
	if err != nil {
		return nil, nil, err
	}
	return catalog, map[string]broker.Executor{"orders": ex}, nil
}

// createDemoDB creates the demo orders schema in the SQLite file at path
// (idempotent).
func createDemoDB(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", sqliteuri.File(path, "_pragma=busy_timeout(5000)"))
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	if _, err := db.ExecContext(ctx, demoSchema); err != nil {
		return fmt.Errorf("create demo schema: %w", err)
	}
	return nil
}

// devPolicy copies the demo policy into DIR/policy on first start; later
// starts serve (and watch) what is there, edits included.
func devPolicy(dir string) (string, error) {
	p := filepath.Join(dir, "policy")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if err := os.CopyFS(p, rules.FS); err != nil {
			return "", fmt.Errorf("copy demo policy: %w", err)
		}
	}
	return p, nil
}

// startEmbeddedNATS runs nats-server in-process with exactly the
// configuration `nats-setup` emits.
func startEmbeddedNATS(keys *natsauth.Keys, host string, port int, dir string, catalog *route.Catalog) (*server.Server, error) {
	opts, err := natsauth.EmbeddedOptions(keys, natsauth.EmbeddedConfig{
		Host: host, Port: port, Dir: dir, JetStream: true,
		Subjects: catalog.Subjects(), Emits: emits(catalog),
	})
	if err != nil {
		return nil, fmt.Errorf("nats server options: %w", err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server did not start on %s:%d", host, port)
	}
	// Load the accounts before any client connects: nats-server v2.15.3
	// loads an account lazily on first connect, and connects racing that
	// load pass before its revocations apply.
	if err := natsauth.LoadAccounts(ns, keys); err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server accounts: %w", err)
	}
	return ns, nil
}

// devSigningKeyFile is where dev mode keeps its checkpoint signing key.
func devSigningKeyFile(dir string) string { return filepath.Join(dir, "secrets", "audit-signing.key") }

// devAuditOrigin returns the dev log's origin: the one dev.json recorded,
// else (a data directory from before dev.json recorded it) the name of the
// signing key or of the verifier key dev.json names, else, on a first
// start, "sqlgate-dev/<host>". The host's name may change later; the log's
// name does not.
func devAuditOrigin(dir string, prev devState, host string) string {
	if prev.AuditOrigin != "" {
		return prev.AuditOrigin
	}
	if b, err := os.ReadFile(devSigningKeyFile(dir)); err == nil {
		if s, err := audit.NewSigner(string(b)); err == nil {
			return s.Name()
		}
	}
	if name, _, ok := strings.Cut(prev.AuditKey, "+"); ok && name != "" {
		return name
	}
	return "sqlgate-dev/" + host
}

// devAuditKeyHistory returns the verifier keys the dev log has used
// (recorded in dev.json), with current added last if it is new.
func devAuditKeyHistory(prev devState, current string) []string {
	keys := slices.Clone(prev.AuditKeys)
	if prev.AuditKey != "" && !slices.Contains(keys, prev.AuditKey) {
		keys = append(keys, prev.AuditKey) // a dev.json from before the history
	}
	if !slices.Contains(keys, current) {
		keys = append(keys, current)
	}
	return keys
}

// devAuditKeys loads or creates the checkpoint signing key (named origin)
// and the parameter HMAC key.
func devAuditKeys(dir, origin string) (audit.Signer, audit.ParamKey, error) {
	skey, err := loadOrCreate(devSigningKeyFile(dir), func() (string, error) {
		s, _, err := audit.GenerateKey(rand.Reader, origin)
		return s, err
	})
	if err != nil {
		return nil, audit.ParamKey{}, err
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		return nil, audit.ParamKey{}, fmt.Errorf("audit signing key: %w", err)
	}
	pk, err := loadParamKey(filepath.Join(dir, "secrets", "audit-param.key"), true)
	if err != nil {
		return nil, audit.ParamKey{}, err
	}
	return signer, pk, nil
}

// loadOrCreate reads a secret file, creating it (0600) with gen() first. A
// file other users may access is refused (readSecretFile).
func loadOrCreate(path string, gen func() (string, error)) (string, error) {
	b, err := readSecretFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	v, err := gen()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(f, v+"\n"); err != nil {
		_ = f.Close()
		return "", err
	}
	return v, f.Close()
}

// loadParamKey reads "<id>:<base64 secret>", creating a fresh key when
// create is set and the file is missing.
func loadParamKey(path string, create bool) (audit.ParamKey, error) {
	gen := func() (string, error) {
		return newParamKeyID(time.Now()) + ":" + base64.StdEncoding.EncodeToString([]byte(randomSecret(32))), nil
	}
	var text string
	var err error
	if create {
		text, err = loadOrCreate(path, gen)
	} else {
		var b []byte
		b, err = readSecretFile(path)
		text = strings.TrimSpace(string(b))
	}
	if err != nil {
		return audit.ParamKey{}, fmt.Errorf("audit parameter key: %w", err)
	}
	id, secret, ok := strings.Cut(text, ":")
	raw, derr := base64.StdEncoding.DecodeString(secret)
	if !ok || derr != nil {
		return audit.ParamKey{}, fmt.Errorf("audit parameter key %s: want <id>:<base64 secret>", path)
	}
	k := audit.ParamKey{ID: id, Secret: raw}
	return k, k.Validate()
}

// newParamKeyID returns the id of a parameter key created at now:
// k<YYYYMMDDhhmmss>-<8 random hex digits>. Records name their parameter
// key by its id, so a key recreated soon after the one before (its file
// removed to rotate it) must not get that one's id: the second and the
// random part keep them apart.
func newParamKeyID(now time.Time) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return "k" + now.UTC().Format("20060102150405") + "-" + hex.EncodeToString(b[:])
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// printDevBanner says where everything is and what to do next: the
// walkthrough's first steps, or, when policyErr says that no policy loaded
// (every request is then denied), why and where to fix it.
func printDevBanner(w io.Writer, st devState, took time.Duration, policyErr error) {
	policyDir := filepath.Join(st.DataDir, "policy")
	if policyErr != nil {
		fmt.Fprintf(w, "\nsqlgate dev started, but its policy failed to load: every request is denied (started in %s; state in %s)\n\n",
			took.Round(10*time.Millisecond), st.DataDir)
	} else {
		fmt.Fprintf(w, "\nsqlgate dev is running (started in %s; state in %s)\n\n", took.Round(10*time.Millisecond), st.DataDir)
	}
	fmt.Fprintf(w, "  API and dashboard   %s\n", st.HTTPURL)
	fmt.Fprintf(w, "  NATS                %s  (operator mode, JetStream on)\n", st.NATSURL)
	fmt.Fprintf(w, "  OpenID provider     %s\n", st.Issuer)
	fmt.Fprintf(w, "  demo database       %s (SQLite, routes in %s)\n", filepath.Join(st.DataDir, "orders.db"), filepath.Join(st.DataDir, "routes.yaml"))
	fmt.Fprintf(w, "  policies            %s (edit them: they reload within a second)\n", policyDir)
	fmt.Fprintf(w, "  dev.json            %s\n\n", filepath.Join(st.DataDir, "dev.json"))
	fmt.Fprintln(w, "  demo users (password, group: what the demo policy allows)")
	for i, u := range st.Users {
		fmt.Fprintf(w, "    %-6s %-18s %-9s %s\n", u.Name, u.Password, u.Groups[0], demoUsers[i].role)
	}
	if policyErr != nil {
		fmt.Fprintf(w, `
No policy is loaded, so every call, credential and route listing is denied until
the policy in %s loads. It failed with:

%s

Fix what it names: the policy reloads within a second of the edit, and the log
says "policy loaded". Or start again from the demo policy: stop sqlgated dev,
move %s aside and run it again (it copies the demo policy there).
Stop with Ctrl-C; the next start reuses %s.
`, policyDir, indentLines(policyErr.Error(), "  "), policyDir, st.DataDir)
		return
	}
	fmt.Fprintf(w, `
Next steps, in another terminal from this directory:

  export SQLGATE_HOME=%s/cli SQLGATE_BROKER=%s
  bin/sqlgate login --username alice --password-stdin < %s/demo/alice.password
  bin/sqlgate routes
  bin/sqlgate creds nats
  bin/sqlgate call orders.v1.create '{"customer":"ACME","amount":250}' --idempotency-key order-1
  bin/sqlgate call orders.v1.create '{"customer":"ACME","amount":5000}'   # refused by policy
  bin/sqlgate call orders.v1.get '{"id":1}'
  bin/sqlgate call --async orders.v1.import '{"customer":"ACME","amount":120}' --idempotency-key import-1   # queued durably in JetStream
  bin/sqlgate call orders.v1.import '{"customer":"ACME","amount":120}' --idempotency-key import-1          # the queued call's result

Sign in to the dashboard at %s (carol verifies the audit log and downloads SOC 2 evidence).
Stop with Ctrl-C; the next start reuses %s.
`, st.DataDir, st.HTTPURL, st.DataDir, st.HTTPURL, st.DataDir)
}

// indentLines prefixes every line of s with prefix.
func indentLines(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}
