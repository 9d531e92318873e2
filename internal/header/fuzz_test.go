package header

import (
	"net/textproto"
	"strings"
	"testing"
	"unicode"
)

// FuzzValid: a value the broker accepts as Correlation-Id or Idempotency-Key
// is 1 to maxLen bytes, each a printable, non-space ASCII character; so it
// survives a NATS or HTTP header unchanged (no CR, LF, NUL, no space that a
// header parser would trim), and it is the same after trimming. Anything else
// is refused.
func FuzzValid(f *testing.F) {
	for _, s := range []string{
		"corr-1", "order-42", "x');DROP/**/TABLE/**/orders;--", "has space", " lead", "trail ", "",
		"tab\there", "cr\rlf\n", "nul\x00", "del\x7f", "é", "日本", "\xff\xfe", strings.Repeat("k", 256), strings.Repeat("k", 257),
	} {
		f.Add(s, MaxIdempotencyKey)
		f.Add(s, MaxCorrelationID)
	}
	f.Fuzz(func(t *testing.T, s string, maxLen int) {
		ok := Valid(s, maxLen)
		want := s != "" && len(s) <= maxLen
		for _, r := range s {
			if r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) {
				want = false
			}
		}
		if ok != want {
			t.Fatalf("Valid(%q, %d) = %v, want %v", s, maxLen, ok, want)
		}
		if !ok {
			return
		}
		if strings.TrimSpace(s) != s || textproto.TrimString(s) != s || strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("valid value %q changes in a header", s)
		}
	})
}
