package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"runtime/debug"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// fallbackModule is the module whose roots the image trusts by default. Its
// version is the one go.sum pins, so a commit names one bundle whatever the
// build machine has in /etc/ssl.
const fallbackModule = "golang.org/x/crypto/x509roots/fallback"

// caFileSource is the value of caSourceLabel for a bundle an operator chose
// with --ca-certs (CA_CERTS).
const caFileSource = "file"

// bundleHeader opens the default bundle: where the roots come from and
// under which licence. crypto/x509 and OpenSSL skip text outside PEM blocks.
const bundleHeader = `# CA certificates trusted by sqlgated (SSL_CERT_FILE): the root certificates of
# Mozilla's NSS trust store, as the Go module golang.org/x/crypto/x509roots/fallback
# (package bundle) holds them at the version sqlgate's go.sum pins. Its image label
# io.github.sqlgate.ca-certificates.source names that version.
#
# The NSS trust store (lib/ckfw/builtins/certdata.txt in https://hg.mozilla.org/projects/nss)
# is distributed under the Mozilla Public License, v. 2.0: https://mozilla.org/MPL/2.0/
#
`

// pinnedBundle returns the default CA bundle in PEM, each certificate after
// a comment naming its subject and SHA-256, and the subjects of the roots it
// leaves out.
//
// It leaves out every root that NSS trusts only under a constraint X.509
// cannot express (Root.Constraint: today a distrust-after date, after which
// NSS no longer trusts certificates the root issues). A PEM file cannot carry
// the constraint, and crypto/x509 would trust such a root without it, for
// certificates issued after the date too; Go's own fallback pool (package
// fallback) applies it in code instead. Leaving the root out fails closed: a
// server whose chain ends there is not trusted, unless an operator passes a
// bundle with --ca-certs.
func pinnedBundle() (bundlePEM []byte, excluded []string, err error) {
	var body bytes.Buffer
	for root := range bundle.Roots() {
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: parse root: %w", fallbackModule, err)
		}
		if root.Constraint != nil {
			excluded = append(excluded, cert.Subject.String())
			continue
		}
		sum := sha256.Sum256(root.Certificate)
		fmt.Fprintf(&body, "# %s\n# SHA-256 %s\n", cert.Subject, hex.EncodeToString(sum[:]))
		if err := pem.Encode(&body, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, nil, err
		}
	}
	if body.Len() == 0 {
		return nil, nil, fmt.Errorf("%s holds no unconstrained root", fallbackModule)
	}
	var out bytes.Buffer
	out.WriteString(bundleHeader)
	if len(excluded) > 0 {
		out.WriteString("# Left out: roots NSS trusts only until a distrust-after date, which a PEM\n# file cannot carry:\n")
		for _, s := range excluded {
			fmt.Fprintf(&out, "#   %s\n", s)
		}
		out.WriteString("#\n")
	}
	out.Write(body.Bytes())
	return out.Bytes(), excluded, nil
}

// pinnedSource is the value of caSourceLabel for the default bundle: the
// module and, when the binary carries its build information (go run and go
// build do, test binaries do not), its version.
func pinnedSource() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == fallbackModule {
				if d.Replace != nil {
					d = d.Replace
				}
				return d.Path + "@" + d.Version
			}
		}
	}
	return fallbackModule
}

// checkBundle refuses a CA bundle that is not PEM certificates: a bundle
// with no certificate, a block of another type (a private key has no place
// in an image), or a certificate that does not parse.
func checkBundle(name string, b []byte) error {
	n := 0
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("CA certificates: %s holds a %q PEM block; want CERTIFICATE blocks only", name, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("CA certificates: %s: certificate %d: %w", name, n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("CA certificates: " + name + " holds no PEM certificate")
	}
	return nil
}
