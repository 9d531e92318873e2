// Command image builds sqlgate's container image without a container engine.
//
// The image is one layer on an empty base: the two static binaries
// (sqlgated as the entrypoint, the sqlgate CLI beside it), a CA
// certificate bundle (by default Mozilla's NSS roots from the Go module
// golang.org/x/crypto/x509roots/fallback at the version go.sum pins, never
// the build machine's; --ca-certs FILE for an operator's own), /etc/passwd
// and /etc/group naming the
// unprivileged user sqlgate (65532), /etc/nsswitch.conf, and the directories
// sqlgated may write (/var/lib/sqlgate, /tmp). There is no shell and no
// package manager. It runs as 65532:65532 and starts `sqlgated serve
// --config /etc/sqlgate/sqlgated.yaml`.
//
// The output is a docker-archive tarball, which `docker load`, `podman load`,
// `skopeo copy docker-archive:FILE docker://REPO:TAG` and `crane push FILE
// REPO:TAG` accept. Every time in the image is the source date (the commit
// time, SOURCE_DATE_EPOCH), so the same binaries give the same bytes on any
// build machine; the labels caLabel and caSourceLabel name the bundle's
// SHA-256 and where it came from.
//
// Usage (`make image` does this for the host's architecture):
//
//	go run ./deploy/image --sqlgated bin/linux_amd64/sqlgated --sqlgate bin/linux_amd64/sqlgate \
//	    --tag ghcr.io/sqlgate/sqlgated:0.1.0 --version 0.1.0 --revision COMMIT \
//	    --source-date 1767225600 --out bin/sqlgated-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image's user: an unprivileged id with no entry anywhere else on the
// host (the same number distroless images use for nonroot).
const (
	uid = 65532
	gid = 65532
)

// Paths inside the image.
const (
	daemonPath = "/usr/local/bin/sqlgated"
	cliPath    = "/usr/local/bin/sqlgate"
	configPath = "/etc/sqlgate/sqlgated.yaml"
	statePath  = "/var/lib/sqlgate"
	caPath     = "/etc/ssl/certs/ca-certificates.crt" // SSL_CERT_FILE
)

// The image labels naming the CA bundle an image trusts: its SHA-256, and
// where it came from (pinnedSource, or caFileSource for --ca-certs).
const (
	caLabel       = "io.github.sqlgate.ca-certificates.sha256"
	caSourceLabel = "io.github.sqlgate.ca-certificates.source"
)

// spec is what goes into the image.
type spec struct {
	daemon, cli []byte // the two binaries
	caCerts     []byte
	caSource    string // caSourceLabel
	tag         string
	version     string
	revision    string
	source      string
	arch        string
	created     time.Time
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.ReadFile); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// run builds the image. Every file it reads, it reads with readFile.
func run(args []string, stdout io.Writer, readFile func(string) ([]byte, error)) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	daemon := fs.String("sqlgated", "", "the sqlgated binary (static, for linux/ARCH)")
	cli := fs.String("sqlgate", "", "the sqlgate CLI binary (static, for linux/ARCH)")
	ca := fs.String("ca-certs", "", "a PEM CA certificate bundle the image trusts instead of the default, Mozilla's NSS roots from "+fallbackModule+" (a private CA, say)")
	tag := fs.String("tag", "ghcr.io/sqlgate/sqlgated:dev", "the image's repository and tag")
	version := fs.String("version", "dev", "the version label")
	revision := fs.String("revision", "", "the source revision label (a commit id)")
	source := fs.String("source", "https://github.com/sqlgate/sqlgate", "the source repository label")
	arch := fs.String("arch", runtime.GOARCH, "the binaries' architecture (GOARCH)")
	date := fs.String("source-date", os.Getenv("SOURCE_DATE_EPOCH"), "the image's time, in seconds since 1970 (default 0)")
	out := fs.String("out", "", "the docker-archive tarball to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *daemon == "" || *cli == "" || *out == "" || fs.NArg() > 0 {
		return errors.New("want --sqlgated FILE --sqlgate FILE --out FILE")
	}
	s := spec{tag: *tag, version: *version, revision: *revision, source: *source, arch: *arch, created: time.Unix(0, 0).UTC()}
	if *date != "" {
		sec, err := strconv.ParseInt(*date, 10, 64)
		if err != nil || sec < 0 {
			return fmt.Errorf("--source-date %q is not a number of seconds", *date)
		}
		s.created = time.Unix(sec, 0).UTC()
	}
	var err error
	if s.daemon, err = readStatic(readFile, *daemon, *arch); err != nil {
		return err
	}
	if s.cli, err = readStatic(readFile, *cli, *arch); err != nil {
		return err
	}
	if *ca == "" {
		// Never the build machine's bundle: it differs between machines and
		// holds whatever CA their administrators added.
		if s.caCerts, _, err = pinnedBundle(); err != nil {
			return err
		}
		s.caSource = pinnedSource()
	} else {
		if s.caCerts, err = readFile(*ca); err != nil {
			return fmt.Errorf("CA certificates: %w", err)
		}
		if err := checkBundle(*ca, s.caCerts); err != nil {
			return err
		}
		s.caSource = caFileSource
	}
	ref, err := name.NewTag(s.tag)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	img, err := build(&s)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(*out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: %s %s (load it with docker load -i, podman load -i, or push it with crane push / skopeo copy)\n", *out, s.tag, digest)
	return err
}

// goarchMachine maps GOARCH to the ELF machine a binary for it has.
var goarchMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
}

// readStatic reads a binary and refuses one the image could not run: not a
// Linux ELF executable for arch, or one that needs a dynamic loader (the
// image has no libc).
func readStatic(readFile func(string) ([]byte, error), path, arch string) ([]byte, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer func() { _ = f.Close() }() // reads from memory
	if m, ok := goarchMachine[arch]; !ok || f.Machine != m {
		return nil, fmt.Errorf("%s is built for %v, not %s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return b, nil
}

// build assembles the image.
func build(s *spec) (v1.Image, error) {
	layer, err := rootfs(s)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: s.created}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   l,
		History: v1.History{Created: created, CreatedBy: "sqlgate deploy/image", Comment: "sqlgated and sqlgate, static"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS = "linux"
	cf.Architecture = s.arch
	cf.Author = "sqlgate"
	cf.Config = v1.Config{
		User:       strconv.Itoa(uid) + ":" + strconv.Itoa(gid),
		Entrypoint: []string{daemonPath},
		Cmd:        []string{"serve", "--config", configPath},
		WorkingDir: statePath,
		Env: []string{
			"PATH=/usr/local/bin",
			"SSL_CERT_FILE=" + caPath,
		},
		ExposedPorts: map[string]struct{}{"8443/tcp": {}},
		Volumes:      map[string]struct{}{statePath: {}},
		StopSignal:   "SIGTERM",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "sqlgated",
			"org.opencontainers.image.description": "sqlgate access broker between NATS services and SQL Server",
			"org.opencontainers.image.source":      s.source,
			"org.opencontainers.image.version":     s.version,
			"org.opencontainers.image.revision":    s.revision,
			"org.opencontainers.image.created":     s.created.Format(time.RFC3339),
			caLabel:                                caSum(s.caCerts),
			caSourceLabel:                          s.caSource,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// caSum is the hex SHA-256 of a CA bundle, for caLabel.
func caSum(bundle []byte) string {
	sum := sha256.Sum256(bundle)
	return hex.EncodeToString(sum[:])
}

// entry is one file or directory of the layer.
type entry struct {
	path     string
	mode     int64
	uid, gid int
	body     []byte // nil: a directory
}

// rootfs returns the layer's uncompressed tar. Directories come before
// their contents, and every entry has the source date as its times.
func rootfs(s *spec) ([]byte, error) {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"sqlgate:x:" + strconv.Itoa(uid) + ":" + strconv.Itoa(gid) + ":sqlgate:" + statePath + ":/sbin/nologin\n"
	group := "root:x:0:\nsqlgate:x:" + strconv.Itoa(gid) + ":\n"
	entries := []entry{
		{path: "etc/", mode: 0o755},
		{path: "etc/group", mode: 0o644, body: []byte(group)},
		{path: "etc/nsswitch.conf", mode: 0o644, body: []byte("hosts: files dns\n")},
		{path: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{path: "etc/sqlgate/", mode: 0o755},
		{path: "etc/ssl/", mode: 0o755},
		{path: "etc/ssl/certs/", mode: 0o755},
		{path: caPath[1:], mode: 0o644, body: s.caCerts},
		{path: "tmp/", mode: 0o1777},
		{path: "usr/", mode: 0o755},
		{path: "usr/local/", mode: 0o755},
		{path: "usr/local/bin/", mode: 0o755},
		{path: cliPath[1:], mode: 0o755, body: s.cli},
		{path: daemonPath[1:], mode: 0o755, body: s.daemon},
		{path: "var/", mode: 0o755},
		{path: "var/lib/", mode: 0o755},
		{path: statePath[1:] + "/", mode: 0o700, uid: uid, gid: gid},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.path, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: s.created, Format: tar.FormatPAX,
		}
		if e.uid == uid {
			h.Uname, h.Gname = "sqlgate", "sqlgate"
		} else {
			h.Uname, h.Gname = "root", "root"
		}
		if e.body == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
