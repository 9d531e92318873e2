package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity"
)

// startRecorder is a Login that records the page a sign-in returns to.
type startRecorder struct{ returnTo string }

func (l *startRecorder) Start(w http.ResponseWriter, _ *http.Request, returnTo string) error {
	l.returnTo = returnTo
	w.WriteHeader(http.StatusFound)
	return nil
}

func (l *startRecorder) Callback(http.ResponseWriter, *http.Request) (identity.Principal, string, error) {
	return identity.Principal{}, "", nil
}

// TestSignInReturnBounded: the page a sign-in returns to travels in the
// sign-in's cookie, sent with every request until the sign-in ends; a
// crafted link with a very long one signs in to the dashboard's start page
// instead of making every request too large for a proxy.
func TestSignInReturnBounded(t *testing.T) {
	t.Parallel()
	login := &startRecorder{}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Policy: fakePolicy{}, Login: login})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ret, want string }{
		{"/audit", "/audit"},
		{"/" + strings.Repeat("a", maxReturn-1), "/" + strings.Repeat("a", maxReturn-1)},
		{"/" + strings.Repeat("a", 3000), "/"},
	} {
		do(t, s, "GET", "/login?return="+url.QueryEscape(tc.ret), "", nil)
		if login.returnTo != tc.want {
			t.Errorf("return of %d bytes: sign-in returns to %d bytes, want %d", len(tc.ret), len(login.returnTo), len(tc.want))
		}
	}
}
