package api

import (
	"strings"
	"testing"
)

// TestRedactURLPasswordWithDelimiters: a password holding an unescaped
// '/', '?' or '#' makes the URL parse as a host and a path (or not at
// all); RedactURL and a RequireTLS refusal showed it in full.
func TestRedactURLPasswordWithDelimiters(t *testing.T) {
	for raw, want := range map[string]string{
		"https://u:12/ss@host":         "https://REDACTED@host",
		"http://u:12/ss@evil.example/": "http://REDACTED@evil.example/",
		"https://u:pa?ss@host/x":       "https://REDACTED@host/x",
		"https://u:pa#ss@host":         "https://REDACTED@host",
		"//:pw12@host":                 "//REDACTED@host",
		"ftp://u:12/ss@host":           "ftp://REDACTED@host",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", raw, got, want)
		}
		for _, secret := range []string{"12/ss", "pa?ss", "pa#ss", "pw12", "ss@"} {
			if !strings.Contains(raw, secret) {
				continue
			}
			if err := RequireTLS("broker", raw); err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("RequireTLS(%s) = %v shows the password", raw, err)
			}
		}
	}
}
