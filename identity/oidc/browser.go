package oidc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sqlgate/sqlgate/identity"
)

// BrowserLogin configures [Client.LoginBrowser].
type BrowserLogin struct {
	// OpenBrowser opens url in the user's browser. When it is nil or
	// fails, the URL is printed for the user to open by hand.
	OpenBrowser func(url string) error
	// Out receives the messages for the user (the URL, what to do).
	Out io.Writer
	// ListenAddr is the loopback address of the redirect listener
	// (default 127.0.0.1:0, any free port; set a port for providers that
	// do not honour RFC 8252's any-port loopback redirects).
	ListenAddr string
	// CallbackPath is the redirect URI's path (default /callback).
	CallbackPath string
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

type callbackResult struct {
	code string
	err  error
}

var callbackPage = template.Must(template.New("cb").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sqlgate sign-in</title>
<style>body{font-family:system-ui,sans-serif;margin:4rem auto;max-width:32rem}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// LoginBrowser signs in with the authorization code flow and PKCE (S256):
// it listens on a loopback port, opens the browser at the provider's
// sign-in page, waits for the redirect, checks state, exchanges the code
// with the PKCE verifier and verifies the ID token and its nonce. ctx bounds
// the whole wait.
func (c *Client) LoginBrowser(ctx context.Context, opts BrowserLogin) (Tokens, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	addr := opts.ListenAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	path := opts.CallbackPath
	if path == "" {
		path = "/callback"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !isLoopback(host) {
		return Tokens{}, fmt.Errorf("browser sign-in: listen address %q is not a loopback address", addr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return Tokens{}, fmt.Errorf("browser sign-in: listen: %w", err)
	}
	redirect := "http://" + ln.Addr().String() + path
	state, nonce, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	conf := c.oauthConfig(redirect, c.cfg.Scopes)
	authOpts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce)}
	if claims := AuthContextClaims(c.cfg.AuthContext); claims != "" {
		authOpts = append(authOpts, oauth2.SetAuthURLParam("claims", claims))
	}
	authURL := conf.AuthCodeURL(state, authOpts...)

	results := make(chan callbackResult, 1)
	outcome := make(chan error, 1)
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if !first {
			writeCallbackPage(w, http.StatusConflict, "Sign-in already handled", "You may close this window.")
			return
		}
		q := r.URL.Query()
		switch {
		case !constantTimeEqual(q.Get("state"), state):
			results <- callbackResult{err: identity.Unauthenticated(ReasonStateMismatch, errors.New("sign-in callback with a wrong state"))}
			writeCallbackPage(w, http.StatusBadRequest, "Sign-in failed", "The sign-in response did not match this request. Run the sign-in again.")
			return
		case q.Get("error") != "":
			oe := &OAuthError{Code: q.Get("error"), Description: q.Get("error_description")}
			results <- callbackResult{err: oauthErr("browser sign-in", oe)}
			writeCallbackPage(w, http.StatusForbidden, "Sign-in failed", "The identity provider refused the sign-in ("+oe.Code+").")
			return
		case q.Get("code") == "":
			results <- callbackResult{err: errors.New("browser sign-in: callback without a code")}
			writeCallbackPage(w, http.StatusBadRequest, "Sign-in failed", "The response carried no authorization code.")
			return
		}
		results <- callbackResult{code: q.Get("code")}
		// Wait for the exchange so the page tells the truth.
		select {
		case err := <-outcome:
			if err != nil {
				writeCallbackPage(w, http.StatusBadGateway, "Sign-in failed", "The sign-in could not be completed; see the terminal.")
				return
			}
			writeCallbackPage(w, http.StatusOK, "Signed in", "You are signed in to sqlgate. You may close this window and return to the terminal.")
		case <-r.Context().Done():
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var served sync.WaitGroup
	served.Go(func() { _ = srv.Serve(ln) }) // returns ErrServerClosed after Shutdown
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		served.Wait()
	}()

	if opts.OpenBrowser != nil && opts.OpenBrowser(authURL) == nil {
		_, _ = fmt.Fprintf(opts.Out, "Your browser has been opened to sign in. If it did not open, visit:\n\n  %s\n\n", authURL)
	} else {
		_, _ = fmt.Fprintf(opts.Out, "Open this URL in a browser on this machine to sign in:\n\n  %s\n\n", authURL)
	}
	_, _ = fmt.Fprintln(opts.Out, "Waiting for the sign-in to complete...")

	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		return Tokens{}, fmt.Errorf("browser sign-in: %w", ctx.Err())
	}
	if res.err != nil {
		outcome <- res.err
		return Tokens{}, res.err
	}
	tok, err := conf.Exchange(c.ctx(ctx), res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		err = c.wrapErr("browser sign-in: code exchange", err)
		outcome <- err
		return Tokens{}, err
	}
	t, err := c.tokens(ctx, GrantAuthorizationCode, tok, nonce)
	outcome <- err
	return t, err
}

func writeCallbackPage(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = callbackPage.Execute(w, map[string]string{"Title": title, "Message": msg})
}
