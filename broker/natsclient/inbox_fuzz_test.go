package natsclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// inboxPrefix is what PrincipalInboxPrefix returns: one subject token.
var inboxPrefix = regexp.MustCompile(`^_INBOX_[0-9a-f]{32}$`)

// FuzzInboxPrefixFromToken reads arbitrary access tokens for the inbox
// prefix of a callout connection. A token is read only when it is three
// dot-separated parts whose second is unpadded base64url of a JSON object
// with a non-empty string iss and sub; the prefix is then that principal's
// (the one the broker grants), a single subject token; errors never show
// the token; nothing panics.
func FuzzInboxPrefixFromToken(f *testing.F) {
	b64 := base64.RawURLEncoding.EncodeToString
	for _, p := range []string{
		`{"iss":"https://idp.example/","sub":"alice"}`, `{"iss":"https://idp.example/"}`, `{"iss":1,"sub":"a"}`,
		`{"iss":"i","sub":"s","iss":"j"}`, `{"iss":"i","sub":"s"} `, `[]`, `null`, `{"iss":"i","sub":"\u0000"}`,
	} {
		f.Add("eyJhbGciOiJSUzI1NiJ9." + b64([]byte(p)) + ".c2ln")
	}
	f.Add("a.eyJpc3MiOiJpIiwic3ViIjoicyJ9=.c")
	f.Add("a.b")
	f.Add("...")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		got, err := InboxPrefixFromToken(token)
		var claims struct {
			Issuer  *string `json:"iss"`
			Subject *string `json:"sub"`
		}
		parts := strings.Split(token, ".")
		readable := len(parts) == 3
		if readable {
			payload, derr := base64.RawURLEncoding.DecodeString(parts[1])
			readable = derr == nil && json.Unmarshal(payload, &claims) == nil &&
				claims.Issuer != nil && *claims.Issuer != "" && claims.Subject != nil && *claims.Subject != ""
		}
		if err != nil {
			if readable {
				t.Fatalf("InboxPrefixFromToken(%q): %v", token, err)
			}
			if len(token) >= 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("InboxPrefixFromToken error %q shows the token", err)
			}
			return
		}
		if !readable {
			t.Fatalf("InboxPrefixFromToken(%q) = %q from a token without iss and sub", token, got)
		}
		if want := PrincipalInboxPrefix(*claims.Issuer, *claims.Subject); got != want || !inboxPrefix.MatchString(got) {
			t.Fatalf("InboxPrefixFromToken(%q) = %q, want %q", token, got, want)
		}
	})
}

// oneAnswer is a broker that answers every request with one status and
// body.
type oneAnswer struct {
	status int
	body   []byte
}

func (a oneAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: a.status, Status: http.StatusText(a.status), Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(a.body)), Request: r,
	}, nil
}

// FuzzWhoAmI feeds arbitrary broker answers to the whoami request a
// callout client makes for its inbox prefix. Only a 200 naming an issuer
// and a subject is an answer; another status is a *BrokerError with that
// status; no error shows the bearer token; nothing panics.
func FuzzWhoAmI(f *testing.F) {
	const token = "fuzz-bearer-token-0123456789"
	f.Add(200, []byte(`{"issuer":"https://idp.example/","subject":"alice","groups":[],"roles":[],"mfa":true}`))
	f.Add(200, []byte(`{"issuer":"https://idp.example/"}`))
	f.Add(200, []byte(`{"issuer":"i","subject":"s","expiry":"never"}`))
	f.Add(200, []byte(token))
	f.Add(401, []byte(`{"error":{"code":"unauthenticated","message":"token expired","request_id":"r1"}}`))
	f.Add(502, []byte(`<html>bad gateway</html>`))
	f.Add(302, []byte(``))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		cfg := FetchConfig{BrokerURL: "https://sqlgate.example", HTTPClient: &http.Client{Transport: oneAnswer{status, body}}}
		who, err := whoAmI(context.Background(), cfg, token)
		if err != nil {
			if strings.Contains(err.Error(), token) {
				t.Fatalf("whoami error %q shows the token", err)
			}
			var be *BrokerError
			if status != http.StatusOK && (!errors.As(err, &be) || be.Status != status) {
				t.Fatalf("whoami answered %d: %v, want a *BrokerError with the status", status, err)
			}
			return
		}
		if status != http.StatusOK {
			t.Fatalf("whoami accepted a %d answer: %+v", status, who)
		}
		if who.Issuer == "" || who.Subject == "" {
			t.Fatalf("whoami accepted %q without issuer and subject", body)
		}
	})
}
