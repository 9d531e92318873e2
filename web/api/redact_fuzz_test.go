package api

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzRedactURL writes arbitrary broker, identity provider and NATS URLs
// the way errors and saved state show them. Whatever else the text holds,
// the password of its authority (scheme://user:password@host, the
// password free of '@'; one holding an unescaped '/', '?' or '#' reads as
// a host and a path, or does not parse, but is a password still) is not
// shown, neither as written nor percent-decoded, by RedactURL nor in a
// RequireTLS refusal; nothing panics.
func FuzzRedactURL(f *testing.F) {
	for _, s := range [][4]string{
		{"https", "alice", "hunter2", "sqlgate.example/api"},
		{"http", "u", "p%40ss", "127.0.0.1:8080"},
		{"nats", "", "s3cr3t!", "nats.example:4222"},
		{"https", "a b", "x:y", "[::1]:443/?q#f"},
		{"HTTPS", "u", "%zz%", "host"},
		{"", "u", "secret", "host"},
		{"http", "u", "secret", ":80"},
		{"ftp", "u", "secret", "h/p@q"},
		{"https", "u", "12/ss", "host"},
		{"http", "u", "pa?ss", "evil.example/"},
		{"", "", "pw#12", "host"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, scheme, user, pass, rest string) {
		if strings.Contains(user+pass, "@") || strings.Contains(scheme, "://") || len(pass) < 4 {
			return
		}
		raw := scheme + "://" + user + ":" + pass + "@" + rest
		hidden := []string{pass}
		if p, err := url.PathUnescape(pass); err == nil && len(p) >= 4 {
			hidden = append(hidden, p)
		}
		// Only a password that is nowhere else in the text, as errors
		// quote and escape it, can be told apart from it.
		others := scheme + "://" + user + ":REDACTED@" + rest
		for _, r := range []string{others, strconv.Quote(others), url.PathEscape(others), url.QueryEscape(others)} {
			others += "\x00" + r
		}
		if u, err := url.Parse(scheme + "://" + rest); err == nil {
			others += "\x00" + u.String() + "\x00" + u.Redacted()
		}
		for _, secret := range hidden {
			if strings.Contains(others, secret) {
				return
			}
		}
		got := RedactURL(raw)
		tlsErr := RequireTLS("broker", raw)
		for _, secret := range hidden {
			if strings.Contains(got, secret) {
				t.Fatalf("RedactURL(%q) = %q shows the password", raw, got)
			}
			if tlsErr != nil && strings.Contains(tlsErr.Error(), secret) {
				t.Fatalf("RequireTLS(%q) = %q shows the password", raw, tlsErr)
			}
		}
	})
}
