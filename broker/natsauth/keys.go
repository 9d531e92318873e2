package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/internal/secretfile"
)

// role names one key of a sqlgate NATS deployment. The name is the seed
// file's base name (`<name>.nk`) and, upper-cased with '-' as '_', part of its
// environment variable (`SQLGATE_NATS_<NAME>_SEED`).
type role struct {
	name   string
	prefix nkeys.PrefixByte
	// multi: the file or variable may hold several seeds, one per line.
	multi bool
}

var roles = []role{
	{"operator", nkeys.PrefixByteOperator, false},
	{"system", nkeys.PrefixByteAccount, false},
	{"broker", nkeys.PrefixByteAccount, false},
	{"users", nkeys.PrefixByteAccount, false},
	{"users-signing", nkeys.PrefixByteAccount, true},
	{"auth", nkeys.PrefixByteAccount, false},
	{"xkey", nkeys.PrefixByteCurve, false},
	{"system-user", nkeys.PrefixByteUser, false},
	{"broker-user", nkeys.PrefixByteUser, false},
	{"callout-user", nkeys.PrefixByteUser, false},
	{"sentinel", nkeys.PrefixByteUser, false},
}

// EnvPrefix prefixes the environment variables [LoadKeys] reads seeds from:
// `SQLGATE_NATS_OPERATOR_SEED`, `SQLGATE_NATS_USERS_SIGNING_SEED`, …
const EnvPrefix = "SQLGATE_NATS_"

// EnvName returns the environment variable that holds the seed of the named
// key (see [KeyNames]).
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_SEED"
}

// KeyNames lists the keys of a deployment in a stable order; each is stored
// as `<name>.nk` in a key directory.
func KeyNames() []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = r.name
	}
	return out
}

// Keys are the nkeys of a sqlgate NATS deployment:
//
//   - the operator, which signs every account JWT (and re-signs the users
//     account on revocation);
//   - the system account; the broker account, where sqlgated's micro service
//     runs and the route subjects are exported; the users account, where
//     people and services connect and import the routes; the auth account,
//     which hosts the callout service and the sentinel user;
//   - the users-account signing keys (the first signs new user JWTs, the
//     others are still trusted: rotation);
//   - the curve (xkey) pair that encrypts auth callout traffic;
//   - the user keys sqlgated itself connects with (system, broker and
//     callout users) and the sentinel user that callout clients present.
//
// Seeds never leave the value: String, GoString, Format and LogValue print a
// redaction, and errors never include them. A *Keys is immutable and safe
// for concurrent use.
type Keys struct {
	operator, system, broker, users, auth nkeys.KeyPair
	usersSigning                          []nkeys.KeyPair
	xkey                                  nkeys.KeyPair
	systemUser, brokerUser, calloutUser   nkeys.KeyPair
	sentinel                              nkeys.KeyPair
	pub                                   PublicKeys
}

// PublicKeys are the public halves of [Keys]; safe to log and publish.
type PublicKeys struct {
	Operator     string   `json:"operator"`
	System       string   `json:"system"`
	Broker       string   `json:"broker"`
	Users        string   `json:"users"`
	UsersSigning []string `json:"usersSigning"`
	Auth         string   `json:"auth"`
	XKey         string   `json:"xkey"`
	SystemUser   string   `json:"systemUser"`
	BrokerUser   string   `json:"brokerUser"`
	CalloutUser  string   `json:"calloutUser"`
	Sentinel     string   `json:"sentinel"`
}

// Public returns the public keys.
func (k *Keys) Public() PublicKeys {
	p := k.pub
	p.UsersSigning = append([]string(nil), k.pub.UsersSigning...)
	return p
}

// String implements fmt.Stringer with a redaction.
func (k *Keys) String() string {
	return "natsauth.Keys{operator:" + k.pub.Operator + " seeds:REDACTED}"
}

// GoString implements fmt.GoStringer with a redaction.
func (k *Keys) GoString() string { return k.String() }

// Format implements fmt.Formatter so that every verb prints the redaction.
func (k *Keys) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer: only public keys are logged.
func (k *Keys) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("operator", k.pub.Operator),
		slog.String("users", k.pub.Users),
		slog.String("broker", k.pub.Broker),
		slog.String("seeds", "REDACTED"),
	)
}

// GenerateKeys creates a fresh set of keys (tests, `nats-setup`).
func GenerateKeys() (*Keys, error) {
	seeds := make(map[string][][]byte, len(roles))
	for _, r := range roles {
		kp, err := nkeys.CreatePair(r.prefix)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", r.name, err)
		}
		s, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", r.name, err)
		}
		seeds[r.name] = [][]byte{s}
	}
	return keysFromSeeds(seeds)
}

// LoadOrCreateKeys loads the keys from the seed files in dir, creating (mode
// 0600, directory 0700) any that do not exist yet. It is meant for
// development: the first start creates the keys and later starts reuse them.
func LoadOrCreateKeys(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	for _, r := range roles {
		path := filepath.Join(dir, r.name+".nk")
		if _, err := os.Stat(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat %s key: %w", r.name, err)
		}
		kp, err := nkeys.CreatePair(r.prefix)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", r.name, err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", r.name, err)
		}
		if err := writeSecretFile(path, append(seed, '\n')); err != nil {
			return nil, fmt.Errorf("write %s key: %w", r.name, err)
		}
	}
	return LoadKeys(dir, nil)
}

// WriteKeys writes the seeds of k into dir as `<name>.nk` files (mode 0600),
// refusing to overwrite existing files.
func (k *Keys) WriteKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	for _, r := range roles {
		var buf bytes.Buffer
		for _, kp := range k.pairs(r.name) {
			s, err := kp.Seed()
			if err != nil {
				return fmt.Errorf("seed of %s key: %w", r.name, err)
			}
			buf.Write(s)
			buf.WriteByte('\n')
		}
		path := filepath.Join(dir, r.name+".nk")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the operator names the key directory
		if err != nil {
			return fmt.Errorf("write %s key: %w", r.name, err)
		}
		_, err = f.Write(buf.Bytes())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s key: %w", r.name, err)
		}
	}
	return nil
}

// LoadKeys loads every key, each from the environment variable
// [EnvName](name) when getenv is not nil and returns a non-empty value, else
// from the file `<dir>/<name>.nk`, which other users must not be able to
// access (mode 0600, or 0640/0440 for a group such as a Kubernetes pod's
// fsGroup). A file or variable holds one seed
// (`users-signing` may hold several, one per line; the first signs). All
// problems are reported at once; no error contains seed material.
func LoadKeys(dir string, getenv func(string) string) (*Keys, error) {
	seeds := make(map[string][][]byte, len(roles))
	var errs []error
	for _, r := range roles {
		var raw []byte
		source := ""
		if getenv != nil {
			if v := getenv(EnvName(r.name)); v != "" {
				raw, source = []byte(v), EnvName(r.name)
			}
		}
		if raw == nil {
			if dir == "" {
				errs = append(errs, fmt.Errorf("%s key: not set (%s)", r.name, EnvName(r.name)))
				continue
			}
			path := filepath.Join(dir, r.name+".nk")
			b, err := readSeedFile(path)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s key: %w", r.name, err))
				continue
			}
			raw, source = b, path
		}
		list := splitSeeds(raw)
		switch {
		case len(list) == 0:
			errs = append(errs, fmt.Errorf("%s key: %s holds no seed", r.name, source))
			continue
		case len(list) > 1 && !r.multi:
			errs = append(errs, fmt.Errorf("%s key: %s holds %d seeds, want 1", r.name, source, len(list)))
			continue
		}
		seeds[r.name] = list
	}
	k, err := keysFromSeeds(seeds)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return k, nil
}

func splitSeeds(raw []byte) [][]byte {
	var out [][]byte
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		out = append(out, line)
	}
	return out
}

func keysFromSeeds(seeds map[string][][]byte) (*Keys, error) {
	k := &Keys{}
	var errs []error
	for _, r := range roles {
		for i, s := range seeds[r.name] {
			kp, err := nkeys.FromSeed(s)
			if err != nil {
				// The nkeys error names no seed bytes, but keep ours generic anyway.
				errs = append(errs, fmt.Errorf("%s key %d: not a valid seed", r.name, i+1))
				continue
			}
			pub, err := kp.PublicKey()
			if err != nil || !hasPrefix(pub, r.prefix) {
				errs = append(errs, fmt.Errorf("%s key %d: wrong key type (want %s)", r.name, i+1, r.prefix))
				continue
			}
			k.set(r.name, kp, pub)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return k, nil
}

func hasPrefix(pub string, p nkeys.PrefixByte) bool {
	switch p {
	case nkeys.PrefixByteOperator:
		return nkeys.IsValidPublicOperatorKey(pub)
	case nkeys.PrefixByteAccount:
		return nkeys.IsValidPublicAccountKey(pub)
	case nkeys.PrefixByteUser:
		return nkeys.IsValidPublicUserKey(pub)
	case nkeys.PrefixByteCurve:
		return nkeys.IsValidPublicCurveKey(pub)
	}
	return false
}

func (k *Keys) set(name string, kp nkeys.KeyPair, pub string) {
	switch name {
	case "operator":
		k.operator, k.pub.Operator = kp, pub
	case "system":
		k.system, k.pub.System = kp, pub
	case "broker":
		k.broker, k.pub.Broker = kp, pub
	case "users":
		k.users, k.pub.Users = kp, pub
	case "users-signing":
		k.usersSigning = append(k.usersSigning, kp)
		k.pub.UsersSigning = append(k.pub.UsersSigning, pub)
	case "auth":
		k.auth, k.pub.Auth = kp, pub
	case "xkey":
		k.xkey, k.pub.XKey = kp, pub
	case "system-user":
		k.systemUser, k.pub.SystemUser = kp, pub
	case "broker-user":
		k.brokerUser, k.pub.BrokerUser = kp, pub
	case "callout-user":
		k.calloutUser, k.pub.CalloutUser = kp, pub
	case "sentinel":
		k.sentinel, k.pub.Sentinel = kp, pub
	}
}

func (k *Keys) pairs(name string) []nkeys.KeyPair {
	switch name {
	case "operator":
		return []nkeys.KeyPair{k.operator}
	case "system":
		return []nkeys.KeyPair{k.system}
	case "broker":
		return []nkeys.KeyPair{k.broker}
	case "users":
		return []nkeys.KeyPair{k.users}
	case "users-signing":
		return k.usersSigning
	case "auth":
		return []nkeys.KeyPair{k.auth}
	case "xkey":
		return []nkeys.KeyPair{k.xkey}
	case "system-user":
		return []nkeys.KeyPair{k.systemUser}
	case "broker-user":
		return []nkeys.KeyPair{k.brokerUser}
	case "callout-user":
		return []nkeys.KeyPair{k.calloutUser}
	case "sentinel":
		return []nkeys.KeyPair{k.sentinel}
	}
	return nil
}

// WithSigningKey returns a copy of k whose users account trusts one more
// signing key, placed first so that it signs new user JWTs (rotation: the
// previous keys stay trusted until they are dropped from the key file).
func (k *Keys) WithSigningKey() (*Keys, error) {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	c := *k
	c.usersSigning = append([]nkeys.KeyPair{kp}, k.usersSigning...)
	c.pub.UsersSigning = append([]string{pub}, k.pub.UsersSigning...)
	return &c, nil
}

func writeSecretFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the operator names the key directory
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSeedFile reads a seed file, refusing one that users other than its
// owner and group may access: the seeds sign every credential.
func readSeedFile(path string) ([]byte, error) {
	return secretfile.Read(path, "a seed")
}
