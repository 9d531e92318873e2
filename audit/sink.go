package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Sink keeps copies of checkpoints somewhere the log's operator cannot
// rewrite them (write-once files, S3 Object Lock, Azure immutable blobs).
// Such copies are what makes truncation, rollback and forks of the log
// detectable: pass them to [Verify] as trusted checkpoints.
//
// Export must be idempotent for the same checkpoint (a retry of a copy that
// already exists with the same bytes succeeds) and must never replace an
// existing copy with different bytes: it returns an error wrapping
// [ErrCheckpointConflict] instead, which is evidence of a fork. Export may
// be called from a goroutine of its own; implementations must be safe for
// concurrent use.
type Sink interface {
	Export(ctx context.Context, cp *Checkpoint) error
}

// SinkReader is a [Sink] that can read its copies back. The log checks, at
// start, that the store extends the newest copy, so that a store whose
// checkpoints were deleted or rolled back is refused.
type SinkReader interface {
	Sink
	// Newest returns the note of the largest checkpoint of origin the sink
	// holds, or nil when it holds none.
	Newest(ctx context.Context, origin string) ([]byte, error)
}

// ErrCheckpointConflict says a sink already holds a different checkpoint
// for the same origin and size.
var ErrCheckpointConflict = errors.New("a different checkpoint of the same size is already exported")

// CheckpointExt is the file name extension of exported checkpoints.
const CheckpointExt = ".checkpoint"

// DirSink writes each checkpoint to its own write-once file,
// Dir/<escaped origin>/<size, 20 digits>.checkpoint, mode 0444. A file is
// written under a temporary name, synced, then hard-linked into place, so a
// copy is either complete or absent and an existing copy is never
// overwritten. Point Dir at storage the operator cannot modify (a WORM
// mount, a directory synced to object-locked storage) for the copies to be
// trustworthy.
type DirSink struct {
	Dir string
}

var _ Sink = (*DirSink)(nil)

// NewDirSink creates dir if needed and returns a sink writing into it.
func NewDirSink(dir string) (*DirSink, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("checkpoint sink: %w", err)
	}
	return &DirSink{Dir: dir}, nil
}

// Path returns the file a checkpoint of origin and size is written to.
func (s *DirSink) Path(origin string, size int64) string {
	return filepath.Join(s.Dir, escapeOrigin(origin), fmt.Sprintf("%020d%s", size, CheckpointExt))
}

var _ SinkReader = (*DirSink)(nil)

// Newest implements [SinkReader]: the file names sort by size.
func (s *DirSink) Newest(ctx context.Context, origin string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.Dir, escapeOrigin(origin)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint sink: %w", err)
	}
	newest := ""
	for _, e := range entries {
		if name := e.Name(); !e.IsDir() && strings.HasSuffix(name, CheckpointExt) && !strings.HasPrefix(name, ".") && name > newest {
			newest = name
		}
	}
	if newest == "" {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(s.Dir, escapeOrigin(origin), newest))
	if err != nil {
		return nil, fmt.Errorf("checkpoint sink: %w", err)
	}
	return data, nil
}

// Export writes cp.Note to its write-once file.
func (s *DirSink) Export(ctx context.Context, cp *Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	path := s.Path(cp.Origin, cp.Size)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	if same, err := sameFile(path, cp.Note); err == nil {
		if !same {
			return fmt.Errorf("export checkpoint %s: %w", path, ErrCheckpointConflict)
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	// Checkpoints are public; read-only for everyone is the point of a
	// write-once copy.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444) //nolint:gosec // G302: see above
	if err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	defer func() { _ = os.Remove(tmp) }() // after the link (or a failure) the temporary name goes
	_, werr := f.Write(cp.Note)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if same, rerr := sameFile(path, cp.Note); rerr == nil && same {
				return nil
			}
			return fmt.Errorf("export checkpoint %s: %w", path, ErrCheckpointConflict)
		}
		return fmt.Errorf("export checkpoint: %w", err)
	}
	if d, err := os.Open(filepath.Clean(dir)); err == nil {
		_ = d.Sync() // best effort: make the new directory entry durable
		_ = d.Close()
	}
	return nil
}

func sameFile(path string, want []byte) (bool, error) {
	got, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return false, err
	}
	return bytes.Equal(got, want), nil
}

// escapeOrigin turns an origin into one safe path element: letters, digits,
// '-', '_' and (not leading) '.' stay, every other byte becomes %XX.
func escapeOrigin(origin string) string {
	var b strings.Builder
	for i := 0; i < len(origin); i++ {
		c := origin[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// NoteExt is the file name extension of the checkpoints of an evidence
// archive (checkpoints/N.note), which [LoadCheckpoints] reads too.
const NoteExt = ".note"

// ErrNoCheckpoints says a directory given to [LoadCheckpoints] holds no
// checkpoint file: verifying against it would check nothing.
var ErrNoCheckpoints = errors.New("no checkpoint files (*" + CheckpointExt + ", *" + NoteExt + ")")

// LoadCheckpoints reads saved checkpoint notes for use as
// [VerifyOptions].Trusted: path is either one file holding one signed note,
// or a directory searched recursively for *.checkpoint files (the layout
// [DirSink] writes; copies fetched from S3 or Azure work the same way) and
// *.note files (the checkpoints/ folder of an evidence archive). Names
// starting with '.' (a sink's temporary files) are skipped. A directory
// without any such file is an error wrapping [ErrNoCheckpoints]: trusted
// copies that are not there protect nothing, and a mistyped or empty
// directory must not pass for them.
func LoadCheckpoints(path string) ([][]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	if !info.IsDir() {
		b, err := readCheckpointFile(path)
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	var out [][]byte
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, CheckpointExt) && !strings.HasSuffix(name, NoteExt) {
			return nil
		}
		b, err := readCheckpointFile(p)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load checkpoints: %s: %w", path, ErrNoCheckpoints)
	}
	return out, nil
}

func readCheckpointFile(path string) ([]byte, error) {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only
	b, err := io.ReadAll(io.LimitReader(f, maxCheckpointSize+1))
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %s: %w", path, err)
	}
	if len(b) > maxCheckpointSize {
		return nil, fmt.Errorf("load checkpoints: %s: %w: file too large", path, ErrMalformedCheckpoint)
	}
	return b, nil
}
