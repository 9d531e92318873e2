package audit_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestBundleLineEnds: a bundle that went through an editor or a transfer
// (a trailing blank line, CRLF line ends) still verifies; one cut off, or
// with a line that is not a record in a record's place, fails at that
// record, naming the line. A trailing blank line made it unreadable ("open
// bundle: open bundle: line 75: EOF"), and CRLF or a cut made every record
// "unknown field leaf".
func TestBundleLineEnds(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 10, 3, "c", nil, nil)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := writeBundle(t, store, audit.BundleOptions{})
	keys := audit.VerifyOptions{Keys: []string{vkey(t, 1)}}
	want := verify(t, openBundle(t, b), keys)
	requireOK(t, want)

	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1] // after the last newline
	firstRecord := 0             // 0-based line of record 0
	for i, line := range lines {
		if strings.HasPrefix(line, `{"leaf":`) {
			firstRecord = i
			break
		}
	}
	for name, variant := range map[string][]byte{
		"a trailing blank line":   append(bytes.Clone(b), '\n'),
		"trailing blank lines":    append(bytes.Clone(b), "\r\n \n\n"...),
		"CRLF line ends":          bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")),
		"no newline at the end":   b[:len(b)-1],
		"CRLF, no newline at end": bytes.TrimSuffix(bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")), []byte("\r\n")),
	} {
		rep := verify(t, openBundle(t, variant), keys)
		if !rep.OK() || rep.Records != want.Records || rep.Origins[0].Checkpoints != want.Origins[0].Checkpoints {
			t.Errorf("%s: %d records, failures %v; want %d records", name, rep.Records, rep.Failures, want.Records)
		}
	}

	last := len(lines) - 1
	lastIndex := int64(last - firstRecord)
	for _, tc := range []struct {
		name  string
		data  []byte
		index int64
		msg   string
	}{
		{
			"cut off in its last line", b[:len(b)-len(lines[last])/2], lastIndex,
			fmt.Sprintf("line %d of the bundle is cut off: the file ends inside it", last+1),
		},
		{
			"cut off in its last line, CRLF", bytes.ReplaceAll(b[:len(b)-len(lines[last])/2], []byte("\n"), []byte("\r\n")), lastIndex,
			fmt.Sprintf("line %d of the bundle is cut off", last+1),
		},
		{
			"a garbage line for record 5", []byte(strings.Join(lines[:firstRecord+5], "") + "garbage\n" + strings.Join(lines[firstRecord+6:], "")), 5,
			fmt.Sprintf("line %d of the bundle is not a record line", firstRecord+6),
		},
		{
			"a blank line for record 7", []byte(strings.Join(lines[:firstRecord+7], "") + "\n" + strings.Join(lines[firstRecord+8:], "")), 7,
			fmt.Sprintf("line %d of the bundle is blank", firstRecord+8),
		},
	} {
		rep := verify(t, openBundle(t, tc.data), keys)
		f := rep.FirstFailure()
		if rep.OK() || f.Code != audit.ProblemBadRecord || f.Index != tc.index || !strings.Contains(f.Message, tc.msg) {
			t.Errorf("%s: first failure %v, want bad_record at %d saying %q", tc.name, f, tc.index, tc.msg)
		}
	}

	// A blank line outside the records is refused, naming it once.
	broken := []byte(strings.Join(lines[:2], "") + "\n" + strings.Join(lines[2:], ""))
	_, err := audit.OpenBundle(bytes.NewReader(broken))
	if err == nil || err.Error() != "open bundle: line 3: blank line (a bundle has blank lines only at its end)" {
		t.Errorf("a blank line among the headers: %v", err)
	}
	_, err = audit.OpenBundle(bytes.NewReader([]byte(strings.Join(lines[:2], "") + "garbage\n" + strings.Join(lines[2:], ""))))
	if err == nil || !strings.HasPrefix(err.Error(), "open bundle: line 3: not a line of an audit bundle") {
		t.Errorf("a garbage line among the headers: %v", err)
	}
}
