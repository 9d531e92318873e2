package audit_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// A record line over the bundle's line limit does not make the bundle
// unopenable: the record is named as a bad record at its index, and the
// records after it, the checkpoints that cover it and the other origins of
// the bundle are still verified.
func TestBundleOversizedRecordLine(t *testing.T) {
	const other = "sqlgate.test/b"
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	mustAppend(t, l, intent("before"))
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	huge := mustAppend(t, l, &audit.Record{Kind: audit.KindDecision, Reasons: []string{strings.Repeat("x", 3<<20/2)}})
	in := mustAppend(t, l, intent("after"))
	mustAppend(t, l, outcome("after", in))
	if err := l.Close(t.Context()); err != nil { // a checkpoint covers the long record and those after it
		t.Fatal(err)
	}
	cfg := audittest.Config(t, other)
	cfg.Signer, _ = audittest.Key(t, other, 1)
	lb, err := audit.Open(t.Context(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Append(t.Context(), intent("b")); err != nil {
		t.Fatal(err)
	}
	if err := lb.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, otherKey := audittest.Key(t, other, 1)
	data := writeBundle(t, store, audit.BundleOptions{})

	b := openBundle(t, data) // before: "open bundle: line 6: line too long"
	rep := verify(t, b, audit.VerifyOptions{Keys: []string{vkey(t, 1), otherKey}})
	if len(rep.Failures) != 1 {
		t.Fatalf("failures = %v, want one bad_record", rep.Failures)
	}
	f := rep.Failures[0]
	if f.Origin != origin || f.Code != audit.ProblemBadRecord || f.Index != huge || !strings.Contains(f.Message, "over the 1048576-byte line limit") {
		t.Errorf("failure = %+v, want bad_record at index %d naming the line limit", f, huge)
	}
	a, o := rep.Origins[0], rep.Origins[1]
	if a.Records != huge+3 || a.End != huge+3 || a.Uncovered != 0 || a.Unpaired != 1 || a.FirstBad != huge {
		t.Errorf("origin %s: %+v: want every record checked and covered, the first intent unpaired", origin, a)
	}
	if o.Origin != other || o.Records != 2 || o.FirstBad != -1 {
		t.Errorf("the other origin: %+v, want verified", o)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "first bad record: origin sqlgate.test/a index 2: the record's line in the bundle is") {
		t.Errorf("report:\n%s", text.String())
	}

	// A long line that is not a record is still a layout error naming it.
	bad := bytes.Replace(data, []byte(`{"format":"`+audit.BundleFormat+`"}`+"\n"),
		[]byte(`{"format":"`+audit.BundleFormat+`"}`+"\n"+`{"key":"`+strings.Repeat("k", 2<<20)+`"}`+"\n"), 1)
	if _, err := audit.OpenBundle(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 2: longer than 1048576 bytes") {
		t.Errorf("OpenBundle with a long key line = %v", err)
	}
}

// A record line of hundreds of megabytes is skipped, not read into memory.
func TestBundleOversizedLineNotHeld(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	mustAppend(t, l, intent("x"))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	data := writeBundle(t, store, audit.BundleOptions{})
	last := bytes.LastIndex(data[:len(data)-1], []byte("\n")) + 1
	line := data[last:]
	// Pad the last record line to 256 MiB with spaces inside its record.
	const pad = 256 << 20
	r := &segments{parts: []segment{{b: data[:len(data)-2]}, {fill: ' ', n: pad}, {b: line[len(line)-2:]}}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b, err := audit.OpenBundle(r)
	if err != nil {
		t.Fatalf("OpenBundle = %v", err)
	}
	rep := verify(t, b, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	runtime.ReadMemStats(&after)
	if len(rep.Failures) == 0 || rep.Failures[0].Code != audit.ProblemBadRecord || rep.Failures[0].Index != 1 ||
		!strings.Contains(rep.Failures[0].Message, "do not match the stored leaf hash") {
		t.Errorf("failures = %v, want bad_record at 1 (the padded record does not match its leaf)", rep.Failures)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("opening and verifying allocated %d MiB for a %d MiB line: it was read into memory", alloc>>20, pad>>20)
	}
}

// segments is a ReadSeeker over byte slices and runs of one byte, so a
// test can have a huge file without holding it.
type segments struct {
	parts []segment
	pos   int64
}

type segment struct {
	b    []byte
	fill byte
	n    int64
}

func (s *segments) size() (n int64) {
	for _, p := range s.parts {
		n += p.len()
	}
	return n
}

func (p segment) len() int64 {
	if p.b != nil {
		return int64(len(p.b))
	}
	return p.n
}

func (s *segments) Read(out []byte) (int, error) {
	off := s.pos
	for _, p := range s.parts {
		if off >= p.len() {
			off -= p.len()
			continue
		}
		k := min(int64(len(out)), p.len()-off)
		if p.b != nil {
			copy(out, p.b[off:off+k])
		} else {
			for i := range out[:k] {
				out[i] = p.fill
			}
		}
		s.pos += k
		return int(k), nil
	}
	return 0, io.EOF
}

func (s *segments) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.pos
	case io.SeekEnd:
		offset += s.size()
	}
	if offset < 0 {
		return 0, errors.New("negative position")
	}
	s.pos = offset
	return offset, nil
}
