package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// hostCA is where a Debian build machine keeps its CA bundle, the one
// `make image` used to copy into the image.
const hostCA = "/etc/ssl/certs/ca-certificates.crt"

// fakeHost is a build machine's file system as run sees it: it serves files
// by path and records every path run reads.
type fakeHost struct {
	files map[string][]byte
	read  []string
}

func (h *fakeHost) readFile(name string) ([]byte, error) {
	h.read = append(h.read, name)
	b, ok := h.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return b, nil
}

// caPEM returns a self-signed CA certificate in PEM, like the TLS-inspection
// CA a company adds to its machines' bundles.
func caPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// certsOf returns the DER certificates of a PEM bundle, failing the test on
// any block that is not a certificate crypto/x509 parses.
func certsOf(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		if _, err := x509.ParseCertificate(block.Bytes); block.Type != "CERTIFICATE" || err != nil {
			t.Fatalf("PEM block %d: type %q, parse error %v", len(out)+1, block.Type, err)
		}
		out = append(out, block.Bytes)
	}
}

// TestPinnedBundle checks the default bundle: every root of the pinned
// fallback module that carries no constraint, in its order, and none that
// does, in a file crypto/x509 reads as SSL_CERT_FILE.
func TestPinnedBundle(t *testing.T) {
	t.Parallel()
	got, excluded, err := pinnedBundle()
	if err != nil {
		t.Fatal(err)
	}
	var want, constrained [][]byte
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			constrained = append(constrained, root.Certificate)
		} else {
			want = append(want, root.Certificate)
		}
	}
	certs := certsOf(t, got)
	if len(certs) == 0 {
		t.Fatal("the default bundle holds no certificate")
	}
	if diff := cmp.Diff(want, certs); diff != "" {
		t.Errorf("pinnedBundle() certificates differ from the unconstrained roots of %s (-want +got):\n%s", fallbackModule, diff)
	}
	for _, c := range constrained {
		if slices.ContainsFunc(certs, func(d []byte) bool { return bytes.Equal(c, d) }) {
			t.Errorf("pinnedBundle() holds a constrained root, which a PEM file would trust without its constraint")
		}
	}
	if len(excluded) != len(constrained) {
		t.Errorf("pinnedBundle() names %d left-out roots, want %d", len(excluded), len(constrained))
	}
	for _, s := range excluded {
		if !strings.Contains(string(got), "#   "+s+"\n") {
			t.Errorf("the bundle's header does not name the left-out root %s", s)
		}
	}
	if !x509.NewCertPool().AppendCertsFromPEM(got) {
		t.Error("crypto/x509 reads no certificate from the bundle")
	}
	if !strings.Contains(string(got), "Mozilla Public License, v. 2.0") {
		t.Error("the bundle does not name the NSS trust store's licence")
	}
	again, _, err := pinnedBundle()
	if err != nil || !bytes.Equal(got, again) {
		t.Errorf("pinnedBundle() differs between two calls: %v", err)
	}
	t.Logf("default bundle: %d certificates, %d bytes; %d constrained roots left out", len(certs), len(got), len(excluded))
}

// TestRunCABundle builds images with run on two build machines whose
// /etc/ssl differ (one with a corporate CA added, one with a bogus file)
// and checks that the default image is the same on both and never reads the
// machine's bundle, and that --ca-certs (CA_CERTS) still puts an operator's
// bundle in the image.
func TestRunCABundle(t *testing.T) {
	static, err := os.ReadFile(goBuild(t, "CGO_ENABLED=0"))
	if err != nil {
		t.Fatal(err)
	}
	corpCA := caPEM(t, "Example Corp TLS Inspection CA")
	newHost := func(ca []byte) *fakeHost {
		files := map[string][]byte{"/build/sqlgated": static, "/build/sqlgate": static}
		if ca != nil {
			files[hostCA] = ca
		}
		return &fakeHost{files: files}
	}
	pinned, _, err := pinnedBundle()
	if err != nil {
		t.Fatal(err)
	}
	// build runs the builder on host and returns the archive, or run's error.
	build := func(t *testing.T, host *fakeHost, extra ...string) ([]byte, error) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "image.tar")
		args := append([]string{
			"--sqlgated", "/build/sqlgated", "--sqlgate", "/build/sqlgate", "--arch", runtime.GOARCH,
			"--tag", "registry.example.com/sqlgate/sqlgated:1.2.3", "--version", "1.2.3", "--revision", "abc123",
			"--source-date", "1767225600", "--out", out,
		}, extra...)
		var stdout bytes.Buffer
		if err := run(args, &stdout, host.readFile); err != nil {
			return nil, err
		}
		return os.ReadFile(out)
	}
	// caOf returns the CA bundle in an archive and its two labels.
	caOf := func(t *testing.T, archive []byte) (ca, sum, source string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "image.tar")
		if err := os.WriteFile(path, archive, 0o600); err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		labels := cf.Config.Labels
		return filesOf(t, img)["etc/ssl/certs/ca-certificates.crt"].body, labels[caLabel], labels[caSourceLabel]
	}

	t.Run("default_ignores_the_host", func(t *testing.T) {
		corp, bogus := newHost(corpCA), newHost([]byte("bogus bundle\n"))
		a, err := build(t, corp)
		if err != nil {
			t.Fatal(err)
		}
		b, err := build(t, bogus)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Error("two build machines with different /etc/ssl built different images")
		}
		for _, h := range []*fakeHost{corp, bogus} {
			if want := []string{"/build/sqlgated", "/build/sqlgate"}; !slices.Equal(h.read, want) {
				t.Errorf("the builder read %q, want only the binaries %q", h.read, want)
			}
		}
		ca, sum, source := caOf(t, a)
		if ca != string(pinned) {
			t.Errorf("the image's CA bundle (%d bytes) is not the pinned bundle (%d bytes)", len(ca), len(pinned))
		}
		if strings.Contains(ca, string(corpCA)) {
			t.Error("the image trusts the build machine's corporate CA")
		}
		if sum != caSum(pinned) || !strings.HasPrefix(source, fallbackModule) {
			t.Errorf("labels sha256 %q source %q, want %q and %s[@version]", sum, source, caSum(pinned), fallbackModule)
		}
	})

	t.Run("ca_certs_overrides", func(t *testing.T) {
		corp := newHost(corpCA)
		archive, err := build(t, corp, "--ca-certs", hostCA)
		if err != nil {
			t.Fatal(err)
		}
		ca, sum, source := caOf(t, archive)
		if ca != string(corpCA) || sum != caSum(corpCA) || source != caFileSource {
			t.Errorf("--ca-certs %s: the image's bundle %q, labels sha256 %q source %q; want the operator's bundle, %q, %q",
				hostCA, ca, sum, source, caSum(corpCA), caFileSource)
		}
		if !slices.Contains(corp.read, hostCA) {
			t.Errorf("--ca-certs %s: the builder read %q", hostCA, corp.read)
		}
	})

	t.Run("ca_certs_missing", func(t *testing.T) {
		if _, err := build(t, newHost(nil), "--ca-certs", hostCA); err == nil || !strings.Contains(err.Error(), "CA certificates") {
			t.Errorf("--ca-certs naming a missing file: err = %v", err)
		}
	})
}

// TestCheckBundle checks that --ca-certs takes only PEM certificates.
func TestCheckBundle(t *testing.T) {
	t.Parallel()
	corp := caPEM(t, "Example Corp Root")
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a key")})
	tests := []struct {
		name   string
		bundle []byte
		want   string // a part of the error; "" for none
	}{
		{"one_certificate", corp, ""},
		{"comments_and_two_certificates", append(append([]byte("# Example Corp\n"), corp...), caPEM(t, "Example Corp Root 2")...), ""},
		{"empty", nil, "holds no PEM certificate"},
		{"not_pem", []byte("bogus bundle\n"), "holds no PEM certificate"},
		{"der", []byte{0x30, 0x82, 0x01, 0x0a}, "holds no PEM certificate"},
		{"private_key", append(append([]byte{}, corp...), key...), `"PRIVATE KEY" PEM block`},
		{"broken_certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), "certificate 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkBundle("bundle.pem", tc.bundle)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkBundle(%s) = %v, want %q", tc.name, err, tc.want)
			}
		})
	}
}
