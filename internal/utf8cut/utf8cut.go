// Package utf8cut bounds text by bytes without cutting a character: client
// strings stored in decision inputs (broker) and names quoted in error
// messages (route) are bounded the same way.
package utf8cut

import (
	"strings"
	"unicode/utf8"
)

// Cut is s cut to at most n bytes of valid UTF-8: an invalid byte becomes
// U+FFFD (as JSON encoding would make it), and the cut falls between
// characters.
func Cut(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // invalid bytes come as utf8.RuneError
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
