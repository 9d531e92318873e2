package oidc

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeReturnTo reads arbitrary return_to values of a sign-in (any
// link may carry one). A value is kept only when a browser on the
// dashboard's page resolves it to the dashboard itself (same scheme and
// host, whatever it does with backslashes, tabs and line breaks); anything
// else is "/"; nothing panics.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{
		"/", "/leases?x=1#y", "//evil.example", `/\evil.example`, "/\t/evil.example", "/\n/evil.example", "https://evil.example",
		"/%2F/evil.example", "/a/../..//evil.example", "javascript:alert(1)", "/\u00a0/evil", "", " /x", "/x\x7f",
	} {
		f.Add(s)
	}
	base, _ := url.Parse("https://sqlgate.example/auth/callback?code=x")
	f.Fuzz(func(t *testing.T, s string) {
		got := safeReturnTo(s)
		if got == "/" {
			return
		}
		if got != s {
			t.Fatalf("safeReturnTo(%q) = %q, neither the value nor /", s, got)
		}
		// What a browser does before it resolves a URL (WHATWG URL): it
		// drops tabs and line breaks and reads \ as / in http(s) URLs.
		browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", `\`, "/").Replace(strings.Trim(s, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "))
		u, err := url.Parse(browser)
		if err != nil {
			t.Fatalf("safeReturnTo kept %q, which does not parse as a URL: %v", s, err)
		}
		if r := base.ResolveReference(u); r.Scheme != base.Scheme || r.Host != base.Host {
			t.Fatalf("safeReturnTo kept %q, which a browser takes to %s", s, r)
		}
	})
}

// FuzzCheckEndpoint reads arbitrary endpoint URLs (from an identity
// provider's discovery document, and the redirects its answers ask for).
// One accepted is an absolute https URL, or http to this machine's
// loopback, without user or password: credentials sent there do not cross
// the network in clear. The refusal of an http(s) URL never shows its
// password; nothing panics.
func FuzzCheckEndpoint(f *testing.F) {
	for _, s := range []string{
		"https://login.example/oauth2/v2.0/token", "https://b2c.example/t?p=B2C_1_signin", "http://127.0.0.1:5556/idp/token",
		"http://localhost/token", "http://[::1]:80/x", "http://idp.example/token", "https://u:hunter2@idp.example/token",
		"HTTPS://IDP.EXAMPLE/x", "https:/idp.example", "//idp.example/token", "http://127.0.0.1.nip.io/x", "http://0x7f000001/x", "",
		"//:hunter2@idp.example", "http://u:12/hunter2@idp.example/t",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := checkEndpoint(raw)
		u, perr := url.Parse(raw)
		if err != nil {
			// (A text that is no http(s) URL is quoted with everything from
			// after "//" to its last '@' redacted: TestCheckEndpointHidesPassword.)
			if perr == nil && u.User != nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http") {
				if p, set := u.User.Password(); set && len(p) >= 4 && strings.Contains(err.Error(), p) && !strings.Contains(u.Redacted(), p) {
					t.Fatalf("checkEndpoint(%q): %v shows the password", raw, err)
				}
			}
			return
		}
		if perr != nil || u.Host == "" || u.User != nil {
			t.Fatalf("checkEndpoint accepted %q", raw)
		}
		switch u.Scheme {
		case "https":
		case "http":
			if !isLoopback(u.Hostname()) {
				t.Fatalf("checkEndpoint accepted plain http to %q", u.Hostname())
			}
		default:
			t.Fatalf("checkEndpoint accepted the scheme %q", u.Scheme)
		}
	})
}
