package identity_test

import (
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/sqlgate/sqlgate/identity"
)

// FuzzCheckPrincipalID reads arbitrary principal ids, as an admin types
// them for revoke-all (sqlgate leases revoke-all --principal, POST
// /api/v1/leases/revoke-all). An accepted id is the ID of the principal it
// splits into (an issuer that is an absolute http(s) URL without user,
// query or fragment, a space, a subject without surrounding space or
// control characters), so it names that principal and no other; nothing
// panics.
func FuzzCheckPrincipalID(f *testing.F) {
	for _, s := range []string{
		"https://login.microsoftonline.com/tid/v2.0 AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "https://idp.example alice",
		"http://127.0.0.1:5556/idp alice", "alice@example.com", "https://idp.example  alice", "https://idp.example alice ",
		"https://u:p@idp.example alice", "https://idp.example? alice", "https://idp.example# alice", "https://idp.example/?p=x alice",
		"idp.example alice", "https:///x alice", "https://idp.example a b", "https://idp.example a\tb", "ftp://idp.example a", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if identity.CheckPrincipalID(id) != nil {
			return
		}
		iss, sub, _ := strings.Cut(id, " ")
		if (identity.Principal{Issuer: iss, Subject: sub}).ID() != id {
			t.Fatalf("accepted %q, which is not the ID of issuer %q and subject %q", id, iss, sub)
		}
		u, err := url.Parse(iss)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.HasSuffix(iss, "#") {
			t.Fatalf("accepted %q: the issuer %q is not an absolute http(s) URL without user, query or fragment", id, iss)
		}
		if sub == "" || strings.TrimSpace(sub) != sub || strings.IndexFunc(id, unicode.IsControl) >= 0 {
			t.Fatalf("accepted %q: the subject %q", id, sub)
		}
	})
}
