package evidence_test

import (
	"bytes"
	"compress/zlib"
	"io"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// pdfHas reports whether a page of the PDF prints s within one text
// string: fpdf writes each line of text as UTF-16BE, escaped, in a
// compressed content stream.
func pdfHas(t *testing.T, pdf []byte, s string) bool {
	t.Helper()
	var needle []byte
	for _, u := range utf16.Encode([]rune(s)) {
		for _, b := range []byte{byte(u >> 8), byte(u)} {
			switch b {
			case '\\', '(', ')':
				needle = append(needle, '\\', b)
			case '\r':
				needle = append(needle, '\\', 'r')
			default:
				needle = append(needle, b)
			}
		}
	}
	for rest := pdf; ; {
		start := bytes.Index(rest, []byte("stream\n"))
		if start < 0 {
			return false
		}
		rest = rest[start+len("stream\n"):]
		end := bytes.Index(rest, []byte("\nendstream"))
		if end < 0 {
			return false
		}
		zr, err := zlib.NewReader(bytes.NewReader(rest[:end]))
		if err == nil {
			text, _ := io.ReadAll(zr)
			if bytes.Contains(text, needle) {
				return true
			}
		}
		rest = rest[end:]
	}
}

// TestReportIncompleteHeadline: the report's INCOMPLETE headline says what
// the evidence's own exceptions say, and no more: a log that began after
// the period's start, or whose newest checkpoint is older than its end, has
// not lost records.
func TestReportIncompleteHeadline(t *testing.T) {
	const (
		lost      = "INCOMPLETE: the log no longer holds every record"
		uncovered = "does not cover the whole period"
	)
	for _, tc := range []struct {
		name      string
		pruneTo   int64 // prune the records before this index
		to        time.Time
		want, not []string
	}{
		{"not_covered", 0, day(5, 0), []string{"INCOMPLETE: the log does not cover the whole period"}, []string{lost}},
		{"pruned", 2, day(3, 0), []string{lost}, []string{uncovered}},
		{"both", 2, day(5, 0), []string{lost, uncovered}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, vkey := buildLog(t)
			if tc.pruneTo > 0 {
				if _, err := store.Prune(t.Context(), origin, tc.pruneTo); err != nil {
					t.Fatal(err)
				}
			}
			opts := options(vkey)
			opts.To = tc.to
			var buf bytes.Buffer
			m, err := evidence.Write(t.Context(), &buf, store, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Incomplete) == 0 {
				t.Fatal("the evidence is complete: the test needs it incomplete")
			}
			pdf := audittest.Unzip(t, buf.Bytes())["report.pdf"]
			for _, w := range tc.want {
				if !pdfHas(t, pdf, w) {
					t.Errorf("report.pdf does not say %q (incomplete: %q)", w, m.Incomplete)
				}
			}
			for _, w := range tc.not {
				if pdfHas(t, pdf, w) {
					t.Errorf("report.pdf says %q, but the incomplete statements are %q", w, m.Incomplete)
				}
			}
		})
	}
}
