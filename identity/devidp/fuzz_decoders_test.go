package devidp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// FuzzUserinfoBearer sends arbitrary Authorization headers to the userinfo
// endpoint. Only an access token the provider signed is answered (200); an
// ID token, a token of another key, a malformed or expired token are
// refused with 401 and a WWW-Authenticate challenge, never a panic, and no
// answer echoes the presented token.
func FuzzUserinfoBearer(f *testing.F) {
	p := fuzzProvider(f)
	var accepted [][]byte // payloads of the access tokens the provider signed
	for _, u := range []string{alice.Username, bob.Username} {
		tok, err := p.TokenFor(u, "")
		if err != nil {
			f.Fatal(err)
		}
		accepted = append(accepted, payloadOf(f, tok))
		f.Add("Bearer " + tok)
		f.Add("Bearer " + tok[:len(tok)-4] + "AAAA") // signature tampered
		f.Add("bearer " + tok)                       // wrong scheme spelling
		parts := strings.Split(tok, ".")
		f.Add("Bearer " + parts[0] + ".e30." + parts[2]) // payload swapped for {}
		f.Add("Bearer " + parts[0] + "." + parts[1] + ".")
	}
	idTok, err := p.IDTokenFor(alice.Username, cli.ID, "n")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer " + idTok) // an ID token is addressed to a client: refused
	f.Add("")
	f.Add("Bearer ")
	f.Add("Bearer a.b.c")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("Basic YWxpY2U6cGFzcw==")
	f.Fuzz(func(t *testing.T, auth string) {
		r := httptest.NewRequest(http.MethodGet, p.Issuer()+"/userinfo", nil)
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		raw := strings.TrimPrefix(auth, "Bearer ")
		if len(raw) >= 16 && strings.Contains(w.Body.String(), raw) {
			t.Fatalf("userinfo answer echoes the presented token: %s", w.Body.String())
		}
		switch w.Code {
		case http.StatusOK:
			// The fuzzer cannot sign: what is accepted is one of the
			// provider's own access tokens.
			jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatalf("accepted %q, which does not parse: %v", auth, err)
			}
			if !slices.ContainsFunc(accepted, func(b []byte) bool { return string(b) == string(jws.UnsafePayloadWithoutVerification()) }) {
				t.Fatalf("accepted a token the provider did not issue as an access token: %q", auth)
			}
			var out map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out["sub"] == nil {
				t.Fatalf("userinfo answer %s has no subject (%v)", w.Body.String(), err)
			}
		case http.StatusUnauthorized:
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer error=") {
				t.Fatalf("401 without a Bearer challenge: %v", w.Header())
			}
		default:
			t.Fatalf("userinfo answered %d to %q, want 200 or 401", w.Code, auth)
		}
	})
}

func payloadOf(f *testing.F, tok string) []byte {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		f.Fatal(err)
	}
	return jws.UnsafePayloadWithoutVerification()
}
