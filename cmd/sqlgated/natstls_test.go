package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/internal/testnet"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// writeTestTLS writes a CA and a certificate for 127.0.0.1 signed by it
// (server and client authentication: NATS routes verify each other) as PEM
// files, 0600.
func writeTestTLS(t *testing.T, caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sqlgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		writeFile(t, path, string(pem.EncodeToMemory(b)), 0o600)
	}
}

// readmeCommand returns the shell command of a Markdown file that starts
// with prefix, its continuation lines joined, as arguments.
func readmeCommand(t *testing.T, file, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cmd strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cmd.Len() == 0 && !strings.HasPrefix(line, prefix) {
			continue
		}
		line, more := strings.CutSuffix(line, "\\")
		cmd.WriteString(line + " ")
		if !more {
			return strings.Fields(cmd.String())
		}
	}
	t.Fatalf("%s has no command starting %q", file, prefix)
	return nil
}

// TestNATSDeployVerbatim follows deploy/nats as an operator would: the
// nats-setup command of its README (the one docs/operations.md gives too),
// under a scratch root, writes what the shipped nats-server.service runs;
// the unit may write the resolver and JetStream directories the command
// names; the configuration requires TLS; nats-server runs it; and sqlgated
// serve connects over tls:// with nats.caFile and becomes ready. The
// cluster example loads on top of it with TLS routes.
func TestNATSDeployVerbatim(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	args := readmeCommand(t, "../../deploy/nats/README.md", "sqlgated nats-setup")
	if ops := readmeCommand(t, "../../docs/operations.md", "sqlgated nats-setup"); strings.Join(ops, " ") != strings.Join(args, " ") {
		t.Errorf("docs/operations.md runs %q, deploy/nats/README.md %q", ops, args)
	}
	unit, err := os.ReadFile("../../deploy/nats/nats-server.service")
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]string{}
	for i := 2; i+1 < len(args); i += 2 {
		flags[args[i]] = args[i+1]
	}
	writable := unitValues(unit, "ReadWritePaths")
	for _, f := range []string{"--resolver-dir", "--jetstream-dir"} {
		if len(writable) != 1 || !strings.HasPrefix(flags[f], writable[0]+"/") {
			t.Errorf("%s %s is not under the unit's ReadWritePaths %q", f, flags[f], writable)
		}
	}
	start := strings.Fields(unitValues(unit, "ExecStart")[0])
	if len(start) != 3 || start[1] != "-c" || filepath.Dir(start[2]) != flags["--out"] {
		t.Fatalf("the unit runs %q, not a file of --out %s", start, flags["--out"])
	}

	// The command under a scratch root, listening on a free loopback port.
	root := t.TempDir()
	under := strings.NewReplacer("/etc/", root+"/etc/", "/var/lib/", root+"/var/lib/")
	natsAddr := testnet.FreeAddr(t)
	for i := range args {
		args[i] = under.Replace(args[i])
		if args[i] == "0.0.0.0:4222" {
			args[i] = natsAddr
		}
	}
	tlsDir := filepath.Join(root, "etc/nats/sqlgate/tls")
	if err := os.MkdirAll(tlsDir, 0o755); err != nil { // install -d -m 0755, as the README does
		t.Fatal(err)
	}
	for _, d := range []string{tlsDir, filepath.Dir(tlsDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(tlsDir, "ca.crt")
	writeTestTLS(t, caFile, filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key"))
	writeFile(t, under.Replace(flags["--routes"]), string(demoRoutes), 0o600)
	var out strings.Builder
	if err := run(t.Context(), args[1:], &out, &out); err != nil {
		t.Fatalf("%q: %v\n%s", args, err, out.String())
	}
	outDir := under.Replace(flags["--out"])
	if fi, err := os.Stat(outDir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("--out %s: %v %v, want 0755 (the nats user reads it)", outDir, fi.Mode(), err)
	}
	conf := under.Replace(start[2])
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the unit's configuration does not load: %v", err)
	}
	if opts.TLSConfig == nil || opts.AllowNonTLS {
		t.Error("the client listener does not require TLS")
	}
	for _, dir := range []string{opts.StoreDir} {
		if !strings.HasPrefix(dir, root+writable[0]+"/") {
			t.Errorf("JetStream store %s is not where the unit may write", dir)
		}
	}

	// The cluster example, as nats-1.conf beside it.
	example, err := os.ReadFile("../../deploy/nats/nats-cluster.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	nats1 := filepath.Join(outDir, "nats-1.conf")
	writeFile(t, nats1, under.Replace(string(example)), 0o644)
	copts, err := server.ProcessConfigFile(nats1)
	if err != nil {
		t.Fatalf("nats-cluster.conf.example does not load: %v", err)
	}
	if copts.Cluster.TLSConfig == nil || copts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || len(copts.Routes) != 3 {
		t.Errorf("cluster routes: TLS %v, %d routes; want mutual TLS on 3", copts.Cluster.TLSConfig, len(copts.Routes))
	}
	if copts.TLSConfig == nil || copts.ServerName != "nats-1" {
		t.Errorf("nats-1.conf lost the client TLS (%v) or server_name %q", copts.TLSConfig, copts.ServerName)
	}

	// nats-server runs the unit's file; sqlgated connects with tls://.
	ns := exec.CommandContext(t.Context(), natsServerBinary(t), "-c", conf)
	var nsOut syncBuffer
	ns.Stdout, ns.Stderr = &nsOut, &nsOut
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ns.Process.Signal(os.Interrupt)
		_ = ns.Wait()
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", natsAddr); err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not listen:\n%s", nsOut.String())
		}
	}
	idp := devidptest.Start(t, devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	if err := os.CopyFS(filepath.Join(root, "policy"), rules.FS); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "routes.yaml"), string(demoRoutes), 0o600)
	if err := createDemoDB(t.Context(), filepath.Join(root, "orders.db")); err != nil {
		t.Fatal(err)
	}
	httpAddr := testnet.FreeAddr(t)
	cfg := serveConfig(root, httpAddr, natsAddr, idp.Issuer(), "  - sqlite:\n      name: orders\n      path: "+root+"/orders.db")
	cfg = strings.NewReplacer("url: nats://"+natsAddr, "url: tls://"+natsAddr+"\n  caFile: "+caFile,
		"keysDir: "+root+"/keys", "keysDir: "+under.Replace(flags["--keys"])).Replace(cfg)
	path := filepath.Join(root, "sqlgated.yaml")
	writeFile(t, path, cfg, 0o600)
	logs := &syncBuffer{}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- run(ctx, []string{"serve", "--config", path, "--log-level", "warn"}, logs, logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, logs)
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("sqlgated serve exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sqlgated serve over tls:// not ready:\n%s\nnats-server:\n%s", logs, nsOut.String())
		}
	}
}
