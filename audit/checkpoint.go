package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint errors, wrapped by [OpenCheckpoint] and [ParseCheckpoint].
var (
	// ErrMalformedCheckpoint: the note or its body is not a checkpoint.
	ErrMalformedCheckpoint = errors.New("malformed checkpoint")
	// ErrUnknownKey: no trusted key for the log's origin signed the
	// checkpoint.
	ErrUnknownKey = errors.New("checkpoint not signed by a trusted key")
	// ErrBadSignature: a trusted key's signature does not verify.
	ErrBadSignature = errors.New("invalid checkpoint signature")
)

// timeExtension prefixes the checkpoint extension line that carries the
// time the checkpoint was made.
const timeExtension = "time "

// maxCheckpointSize bounds the checkpoint notes this package parses.
const maxCheckpointSize = 16 << 10

// Checkpoint is a signed statement that the log named Origin had Size
// records whose RFC 6962 Merkle tree hash is Root. Its body follows the C2SP
// tlog-checkpoint format: three lines (origin, decimal size, base64 root)
// then extension lines; sqlgate adds one, "time <RFC 3339 UTC>". Note is the
// complete signed note (C2SP signed-note, Ed25519).
type Checkpoint struct {
	Origin string    `json:"origin"`
	Size   int64     `json:"size"`
	Root   tlog.Hash `json:"root"`
	Time   time.Time `json:"time,omitzero"`
	// KeyID names the verified origin key that signed the note,
	// "<name>+<hex key hash>" (set by [OpenCheckpoint]).
	KeyID string `json:"key_id,omitempty"`
	Note  []byte `json:"note"`
}

// checkpointBody returns the note text of a checkpoint.
func checkpointBody(origin string, size int64, root tlog.Hash, t time.Time) []byte {
	b := make([]byte, 0, len(origin)+128)
	b = append(b, origin...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, root[:])
	b = append(b, '\n')
	if !t.IsZero() {
		b = append(b, timeExtension...)
		b = t.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '\n')
	}
	return b
}

// ParseCheckpoint parses an unverified checkpoint: either its body (the
// note text without signatures) or a whole signed note, whose signature
// lines are then ignored, not checked (use [OpenCheckpoint] to check them).
// Unknown extension lines are ignored, as C2SP requires; the "time"
// extension must be well-formed when present.
func ParseCheckpoint(text []byte) (*Checkpoint, error) {
	if i := bytes.LastIndex(text, []byte("\n\n")); i >= 0 {
		text = text[:i+1] // a signed note: keep the text
	}
	if len(text) > maxCheckpointSize || !utf8.Valid(text) || len(text) == 0 || text[len(text)-1] != '\n' {
		return nil, fmt.Errorf("%w: not UTF-8 text ending in a newline", ErrMalformedCheckpoint)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("%w: fewer than three lines", ErrMalformedCheckpoint)
	}
	c := &Checkpoint{Origin: lines[0]}
	if !validOrigin(c.Origin) {
		return nil, fmt.Errorf("%w: invalid origin line", ErrMalformedCheckpoint)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return nil, fmt.Errorf("%w: invalid size line", ErrMalformedCheckpoint)
	}
	c.Size = n
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return nil, fmt.Errorf("%w: invalid root hash line", ErrMalformedCheckpoint)
	}
	copy(c.Root[:], h)
	for _, ext := range lines[3:] {
		if ext == "" {
			return nil, fmt.Errorf("%w: empty extension line", ErrMalformedCheckpoint)
		}
		v, ok := strings.CutPrefix(ext, timeExtension)
		if !ok {
			continue
		}
		if !c.Time.IsZero() {
			return nil, fmt.Errorf("%w: repeated time extension", ErrMalformedCheckpoint)
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.UTC().Format(time.RFC3339Nano) != v {
			return nil, fmt.Errorf("%w: invalid time extension", ErrMalformedCheckpoint)
		}
		c.Time = t
	}
	return c, nil
}

// OpenCheckpoint verifies a signed checkpoint note and parses its body. At
// least one signature must come from a key in verifiers whose name is the
// checkpoint's origin; other signatures (witness cosignatures) are allowed.
// It fails with [ErrUnknownKey] when no trusted origin key signed it and
// with [ErrBadSignature] when a trusted key's signature does not verify.
func OpenCheckpoint(msg []byte, verifiers note.Verifiers) (*Checkpoint, error) {
	if len(msg) > maxCheckpointSize {
		return nil, fmt.Errorf("%w: note too large", ErrMalformedCheckpoint)
	}
	n, err := note.Open(msg, verifiers)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w (signed by %s)", ErrUnknownKey, signerList(unverified.Note.UnverifiedSigs))
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: key %s+%08x", ErrBadSignature, invalid.Name, invalid.Hash)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformedCheckpoint, err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	for _, s := range n.Sigs {
		if s.Name == c.Origin {
			c.KeyID = fmt.Sprintf("%s+%08x", s.Name, s.Hash)
			break
		}
	}
	if c.KeyID == "" {
		return nil, fmt.Errorf("%w (no signature by a key named %q)", ErrUnknownKey, c.Origin)
	}
	c.Note = bytes.Clone(msg)
	return c, nil
}

func signerList(sigs []note.Signature) string {
	if len(sigs) == 0 {
		return "nobody"
	}
	var parts []string
	for _, s := range sigs {
		parts = append(parts, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return strings.Join(parts, ", ")
}

// validOrigin reports whether s can be a log origin: non-empty, printable,
// no spaces and no '+' (it is also the signing key's name).
func validOrigin(s string) bool {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) || strings.Contains(s, "+") {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Signer signs checkpoints. Name must be the log's origin. VerifierKey
// returns the matching public verifier key in note format
// ("<name>+<hex key hash>+<base64 key>"), which the log records in its key
// history and auditors pass to the verifier.
type Signer interface {
	note.Signer
	VerifierKey() string
}

type ed25519Signer struct {
	note.Signer
	vkey string
}

func (s *ed25519Signer) VerifierKey() string { return s.vkey }

// GenerateKey creates an Ed25519 checkpoint signing key for the log named
// origin and returns the private key (skey, a secret in note format
// "PRIVATE+KEY+<origin>+<hash>+<base64>") and the public verifier key
// (vkey).
func GenerateKey(rand io.Reader, origin string) (skey, vkey string, err error) {
	if !validOrigin(origin) {
		return "", "", fmt.Errorf("generate key: invalid origin %q", origin)
	}
	skey, vkey, err = note.GenerateKey(rand, origin)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return skey, vkey, nil
}

// NewSigner returns the Ed25519 signer for a private key made by
// [GenerateKey]. Errors never contain the key.
func NewSigner(skey string) (Signer, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, errors.New("new signer: malformed private key")
	}
	// Derive the public key: skey is PRIVATE+KEY+<name>+<hash>+<base64(alg||seed)>.
	// The key name cannot contain '+', but the base64 key can: split on the
	// first four '+' only.
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 {
		return nil, errors.New("new signer: malformed private key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("new signer: not an Ed25519 private key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	return &ed25519Signer{Signer: s, vkey: vkey}, nil
}

// NewVerifiers parses public verifier keys (as returned by [GenerateKey] or
// [Signer.VerifierKey]) into the set [Verify], [VerifyProof] and
// [OpenCheckpoint] take.
func NewVerifiers(vkeys ...string) (note.Verifiers, error) {
	list := make([]note.Verifier, 0, len(vkeys))
	seen := map[string]bool{}
	for _, k := range vkeys {
		k = strings.TrimSpace(k)
		if seen[k] {
			continue
		}
		seen[k] = true
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("parse verifier key: %w", err)
		}
		list = append(list, v)
	}
	return note.VerifierList(list...), nil
}

// keyID returns "<name>+<hex hash>" of a verifier key.
func keyID(vkey string) string {
	name, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	return name + "+" + hash
}
