package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/internal/filelock"
	"github.com/sqlgate/sqlgate/web/api"
)

const tokenName = "default"

func (e *env) tokens() *oidc.TokenStore { return oidc.NewTokenStore(e.path("tokens")) }

func cmdLogin(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "login", "sqlgate login [--broker URL] [--device | --username U --password-stdin | --client-credentials --client-id ID --client-secret-file F [--scope S]]")
	broker := brokerFlag(fs)
	username := fs.String("username", "", "sign in with the password grant as this user (where the IdP allows it)")
	passwordStdin := fs.Bool("password-stdin", false, "read the password from standard input (with --username)")
	device := fs.Bool("device", false, "sign in with the device authorization grant (enter a code in any browser)")
	clientCreds := fs.Bool("client-credentials", false, "sign in as a service with the OAuth client credentials grant")
	clientID := fs.String("client-id", "", "OAuth client id (default: the CLI client the broker advertises; required with --client-credentials)")
	secretFile := fs.String("client-secret-file", "", "file holding the client secret (with --client-credentials)")
	secretEnv := fs.String("client-secret-env", "", "environment variable holding the client secret (with --client-credentials)")
	var scopeFlags multiFlag
	fs.Var(&scopeFlags, "scope", "scope to request with --client-credentials, instead of the broker's identity.cli.serviceScopes (Entra: api://<sqlgate app>/.default); repeat it or separate scopes with commas")
	noBrowser := fs.Bool("no-browser", false, "print the sign-in URL instead of opening a browser")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for an interactive sign-in")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate login [flags]"); err != nil {
		return err
	}
	modes := 0
	for _, on := range []bool{*username != "", *device, *clientCreds} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return usagef("choose one of --username, --device and --client-credentials")
	}
	if *username != "" && !*passwordStdin {
		return usagef("--username needs --password-stdin (passwords are never taken as arguments)")
	}
	if *clientCreds && *clientID == "" {
		return usagef("--client-credentials needs --client-id")
	}
	if len(scopeFlags) > 0 && !*clientCreds {
		return usagef("--scope is for --client-credentials: user sign-ins request the scopes the broker publishes")
	}
	scopes, err := serviceScopes(scopeFlags)
	if err != nil {
		return err
	}

	st, err := e.loadStateForLogin()
	if err != nil {
		return err
	}
	url, err := e.brokerURL(*broker, st)
	if err != nil {
		return err
	}
	anon, err := api.NewClient(url, nil)
	if err != nil {
		return err
	}
	disc, err := anon.Discovery(ctx)
	if err != nil {
		return fmt.Errorf("ask the broker how to sign in: %w", err)
	}
	if err := api.RequireTLS("identity provider", disc.Issuer); err != nil {
		return err
	}
	// AuthContext: the browser and device sign-ins and their renewals ask
	// Entra for it (claims parameter), without which its tokens carry no
	// MFA evidence; password and service sign-ins do not ask.
	cc := oidc.ClientConfig{Issuer: disc.Issuer, ClientID: disc.ClientID, Scopes: disc.Scopes, AuthContext: disc.AuthContext}
	if *clientID != "" {
		cc.ClientID = *clientID
	}
	if *clientCreds {
		// Empty: derived from disc.Scopes (a broker that predates
		// service_scopes).
		cc.ServiceScopes = disc.ServiceScopes
		if len(scopes) > 0 {
			cc.ServiceScopes = scopes
		}
		secret, err := readSecret(e, *secretFile, *secretEnv)
		if err != nil {
			return err
		}
		cc.ClientSecret = secret
	}
	client, err := oidc.OpenClient(ctx, cc)
	if err != nil {
		return fmt.Errorf("reach the identity provider %s: %w", disc.Issuer, err)
	}
	lctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var tok oidc.Tokens
	switch {
	case *username != "":
		password, err := readPassword(e)
		if err != nil {
			return err
		}
		tok, err = client.LoginPassword(lctx, *username, password)
		if err != nil {
			return loginError(err)
		}
	case *device:
		tok, err = client.LoginDevice(lctx, e.stderr)
		if err != nil {
			return loginError(err)
		}
	case *clientCreds:
		tok, err = client.LoginClientCredentials(lctx)
		if err != nil {
			return loginError(err)
		}
	default:
		opener := openBrowser
		if *noBrowser {
			opener = nil
		}
		tok, err = client.LoginBrowser(lctx, oidc.BrowserLogin{OpenBrowser: opener, Out: e.stderr})
		if err != nil {
			return loginError(err)
		}
	}
	if err := e.saveTokens(ctx, tok); err != nil {
		return err
	}
	// Not known until the broker says who signed in.
	st.Principal = ""
	st.Broker, st.Issuer, st.ClientID, st.Scopes, st.NATSURL, st.Audience = url, disc.Issuer, cc.ClientID, disc.Scopes, disc.NATSURL, disc.Audience
	st.SecretFile, st.SecretEnv, st.ServiceScopes, st.AuthContext = "", "", nil, cc.AuthContext
	if *clientCreds {
		// Renewal asks again for the same scopes.
		st.SecretFile, st.SecretEnv, st.ServiceScopes = absPath(*secretFile), *secretEnv, cc.ServiceScopes
	}
	if err := e.saveState(st); err != nil {
		return err
	}
	authed, err := api.NewClient(url, e.accessToken)
	if err != nil {
		return err
	}
	who, err := authed.WhoAmI(ctx)
	if err != nil {
		return fmt.Errorf("signed in with the identity provider, but the broker refused the token: %w", err)
	}
	st.Principal = who.Issuer + " " + who.Subject
	if err := e.saveState(st); err != nil {
		return err
	}
	groups := ""
	if len(who.Groups) > 0 {
		groups = " (groups: " + strings.Join(who.Groups, ", ") + ")"
	}
	fmt.Fprintf(e.stdout, "Signed in to %s as %s%s.\n", url, who.Display(), groups)
	// NATS credentials saved for another principal or broker would let
	// sqlgate call act as them. Ones that record no owner (no nats.json, or
	// one of an earlier version) are kept: sqlgate call does not use them,
	// and sqlgate logout revokes them if they are this sign-in's (deleting
	// them would leave a credential valid with nothing to revoke it by).
	info, ok := e.savedNATS()
	if ok && info.Principal == "" && (info.Broker == "" || sameBroker(info.Broker, url)) {
		fmt.Fprintf(e.stdout, "The NATS credentials in %s record no owner: kept, so that sqlgate logout can revoke them if they are yours "+
			"(sqlgate call does not use them: run sqlgate creds nats for your own).\n", e.path(natsCredsOut))
		return nil
	}
	if ok && (info.Principal != st.Principal || !sameBroker(info.Broker, url)) {
		gone, kept, err := e.forgetNATS(info)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Removed the NATS credentials saved for %s (%s): run sqlgate creds nats for your own.\n", orUnknown(info.Principal), strings.Join(gone, ", "))
		if kept != "" {
			fmt.Fprintf(e.stdout, "%s (written with creds nats -o) remains: delete it if it is no longer needed.\n", kept)
		}
	}
	return nil
}

// serviceScopes reads the --scope flags: each may list several scopes
// separated by commas. A scope that a client credentials request cannot
// carry (empty, with whitespace, openid, offline_access, …) is a usage
// error.
func serviceScopes(flags []string) ([]string, error) {
	var scopes []string
	for _, f := range flags {
		scopes = append(scopes, strings.Split(f, ",")...)
	}
	if err := oidc.CheckServiceScopes(scopes); err != nil {
		return nil, usagef("--scope: %v", err)
	}
	return scopes, nil
}

func orUnknown(principal string) string {
	if principal == "" {
		return "an earlier sign-in"
	}
	return principal
}

// savedNATS reads nats.json; ok is false when there is none. One that does
// not parse is returned empty (ok), so that it is removed.
func (e *env) savedNATS() (natsInfo, bool) {
	var info natsInfo
	b, err := os.ReadFile(e.path(natsInfoFile))
	if err != nil {
		_, serr := os.Stat(e.path(natsCredsOut))
		return info, serr == nil // a creds file without its nats.json
	}
	_ = json.Unmarshal(b, &info)
	return info, true
}

// forgetNATS removes the saved NATS credential from $SQLGATE_HOME:
// nats.json and the default creds file, but for the names in keep. A creds
// file written elsewhere with creds nats -o is the user's: it is left in
// place and returned as kept (when it still exists), so that the caller
// can say so. gone lists what was removed.
func (e *env) forgetNATS(info natsInfo, keep ...string) (gone []string, kept string, err error) {
	if info.Creds != "" && info.Creds != e.path(natsCredsOut) {
		if _, serr := os.Stat(info.Creds); serr == nil {
			kept = info.Creds
		}
	}
	for _, f := range []string{natsCredsOut, natsInfoFile} {
		if slices.Contains(keep, f) {
			continue
		}
		path := e.path(f)
		if err := os.Remove(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return gone, kept, err
		}
		gone = append(gone, path)
	}
	return gone, kept, nil
}

func loginError(err error) error {
	switch {
	case errors.Is(err, oidc.ErrIDPUnreachable):
		return fmt.Errorf("the identity provider is unreachable; try again later: %w", err)
	case errors.Is(err, oidc.ErrAccessDenied):
		return fmt.Errorf("sign-in refused: %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("sign-in timed out")
	}
	return fmt.Errorf("sign-in failed: %w", err)
}

// minValid is how long a stored bearer token must stay valid to be used
// without renewing it first.
const minValid = 30 * time.Second

// tokensLock is the file whose lock serializes reading, renewing and saving
// the stored sign-in across sqlgate processes; tokenLockWait bounds the
// wait for it.
const (
	tokensLock    = "tokens.lock"
	tokenLockWait = 2 * time.Minute
)

// lockTokens takes the sign-in lock, waiting while another process holds
// it. Renewing rotates the refresh token, and providers that detect reuse
// (devidp, Okta, Auth0) revoke the whole sign-in when two processes present
// the same one: so one process renews, and the others then read its result.
func (e *env) lockTokens(ctx context.Context) (release func(), err error) {
	if err := e.mkHome(); err != nil {
		return nil, err
	}
	path := e.path(tokensLock)
	ctx, cancel := context.WithTimeout(ctx, tokenLockWait)
	defer cancel()
	for {
		rel, err := filelock.Lock(path)
		if err == nil {
			return func() { _ = rel() }, nil
		}
		if !errors.Is(err, filelock.ErrLocked) {
			return nil, homeError(err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for another sqlgate renewing your sign-in (%s is locked): %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// saveTokens replaces the stored sign-in under the sign-in lock.
func (e *env) saveTokens(ctx context.Context, tok oidc.Tokens) error {
	release, err := e.lockTokens(ctx)
	if err != nil {
		return err
	}
	defer release()
	return e.tokens().Save(tokenName, tok)
}

// loadTokens reads the stored sign-in.
func (e *env) loadTokens() (oidc.Tokens, error) {
	tok, err := e.tokens().Load(tokenName)
	if errors.Is(err, oidc.ErrNoTokens) {
		return oidc.Tokens{}, errors.New("not signed in: run sqlgate login")
	}
	return tok, err
}

// usable reports whether tok's bearer token stays valid for minValid.
func usable(tok oidc.Tokens) bool {
	exp := tok.BearerExpiry()
	return tok.Bearer() != "" && !exp.IsZero() && time.Until(exp) > minValid
}

// accessToken returns a bearer token that stays valid for a while,
// refreshing the stored sign-in when needed. Renewal runs under the sign-in
// lock, so parallel sqlgate runs renew once and share the result.
func (e *env) accessToken(ctx context.Context) (string, error) {
	tok, err := e.loadTokens()
	if err != nil {
		return "", err
	}
	if usable(tok) {
		return tok.Bearer(), nil
	}
	release, err := e.lockTokens(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	// Another process may have renewed it while this one waited.
	if tok, err = e.loadTokens(); err != nil {
		return "", err
	}
	if usable(tok) {
		return tok.Bearer(), nil
	}
	st, err := e.loadState()
	if err != nil {
		return "", err
	}
	cc := oidc.ClientConfig{Issuer: tok.Issuer, ClientID: tok.ClientID, Scopes: st.Scopes, ServiceScopes: st.ServiceScopes, AuthContext: st.AuthContext}
	if st.SecretFile != "" || st.SecretEnv != "" {
		if cc.ClientSecret, err = readSecret(e, st.SecretFile, st.SecretEnv); err != nil {
			return "", fmt.Errorf("renew the service sign-in: %w", err)
		}
	}
	client, err := oidc.OpenClient(ctx, cc)
	if err != nil {
		return "", fmt.Errorf("your sign-in expired and the identity provider is unreachable to renew it: %w", err)
	}
	fresh, changed, err := client.Fresh(ctx, tok, minValid)
	if err != nil {
		if errors.Is(err, oidc.ErrLoginExpired) {
			// A writer that does not take the lock (an older sqlgate) may
			// have renewed it meanwhile, making this refresh token a used one.
			if again, lerr := e.loadTokens(); lerr == nil && again.RefreshToken != tok.RefreshToken && usable(again) {
				return again.Bearer(), nil
			}
			return "", errors.New("your sign-in expired: run sqlgate login")
		}
		var refused *oidc.OAuthError
		if errors.As(err, &refused) {
			// The provider refused the renewal itself (a service's client
			// secret rotated: invalid_client): only a new sign-in helps.
			return "", fmt.Errorf("renew your sign-in: %w: run sqlgate login", err)
		}
		return "", fmt.Errorf("renew your sign-in: %w", err)
	}
	if changed {
		if err := e.tokens().Save(tokenName, fresh); err != nil {
			return "", err
		}
	}
	return fresh.Bearer(), nil
}

func cmdLogout(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "logout", "sqlgate logout [--broker URL]")
	broker := fs.String("broker", "", "broker URL to revoke the saved NATS credentials at (default: the one signed in to; "+
		"$SQLGATE_BROKER when the CLI state is unreadable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate logout"); err != nil {
		return err
	}
	// The saved NATS credentials are revoked while the sign-in still can;
	// signing out does not wait for a broker that does not answer. The
	// files of a credential that could not be revoked are kept (they name
	// its user key, without which nothing revokes it), and when a retry
	// may revoke it, so is the sign-in that can.
	info, hasNATS := e.savedNATS()
	if !hasNATS {
		// Never signed in, or signed out already: nothing to revoke or
		// remove (and no state directory to create for the lock).
		if _, err := e.tokens().Load(tokenName); errors.Is(err, oidc.ErrNoTokens) {
			fmt.Fprintln(e.stdout, "not signed in: nothing to do")
			return nil
		}
	}
	var creds []savedCred
	if hasNATS {
		creds = e.savedCreds(info)
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		e.revokeSavedNATS(rctx, *broker, info, creds)
		cancel()
	}
	retry := slices.ContainsFunc(creds, func(c savedCred) bool { return c.err != nil && !c.final })
	if !retry {
		release, err := e.lockTokens(ctx)
		if err != nil {
			return err
		}
		err = e.tokens().Delete(tokenName)
		release()
		if err != nil {
			return err
		}
		if st, err := e.loadState(); err == nil && st.Principal != "" {
			st.Principal = ""
			if err := e.saveState(st); err != nil {
				return err
			}
		}
	}
	if !hasNATS {
		fmt.Fprintln(e.stdout, "Signed out: tokens removed.")
		return nil
	}
	gone, kept, err := e.forgetNATS(info, e.unrevokedFiles(info, creds)...)
	if err != nil {
		return err
	}
	if len(creds) == 0 {
		fmt.Fprintf(e.stdout, "The NATS credential was not revoked (its user key is unknown): it stays valid until it expires%s.\n", expiresAt(info.ExpiresAt))
	}
	for _, c := range creds {
		switch {
		case c.expired:
			fmt.Fprintf(e.stdout, "The NATS credential %s (%s) expired%s: nothing to revoke.\n", c.key, c.file, expiresAt(c.expires))
		case c.err == nil:
			fmt.Fprintf(e.stdout, "The NATS credential %s was revoked (%s).\n", c.key, c.file)
		default:
			fmt.Fprintf(e.stdout, "The NATS credential %s (%s) could not be revoked (%v): it stays valid until it expires%s, and its files are kept.\n",
				c.key, c.file, c.err, expiresAt(c.expires))
		}
	}
	if len(gone) > 0 {
		fmt.Fprintf(e.stdout, "NATS credentials removed (%s).\n", strings.Join(gone, ", "))
	}
	if kept != "" && !slices.ContainsFunc(creds, func(c savedCred) bool { return c.err != nil && c.key == info.UserKey }) {
		fmt.Fprintf(e.stdout, "%s (written with creds nats -o) remains: delete it if it is no longer needed.\n", kept)
	}
	if retry {
		return errors.New("not signed out, so that sqlgate logout can still revoke the NATS credentials it could not: " +
			"fix the cause above and run sqlgate logout again (a credential that has expired by then needs no revoking)")
	}
	fmt.Fprintln(e.stdout, "Signed out: tokens removed.")
	return nil
}

func expiresAt(at string) string {
	if at == "" {
		return ""
	}
	return " at " + at
}

// savedCred is a NATS credential sqlgate saved: its creds file, user key
// (its lease id), expiry (RFC 3339, "" when unknown), whether it has
// expired and, after logout tried, why it could not be revoked, and
// whether that is final (trying again would not revoke it).
type savedCred struct {
	file, key, expires string
	expired            bool
	err                error
	final              bool
}

// savedCreds lists the NATS credentials to revoke at logout: the one in
// $SQLGATE_HOME/nats.creds, read from the file itself, and the one nats.json
// names when it is another (creds nats -o repoints nats.json and leaves an
// earlier nats.creds in place).
func (e *env) savedCreds(info natsInfo) []savedCred {
	var out []savedCred
	now := time.Now()
	home := e.path(natsCredsOut)
	if uc, err := userClaimsOf(home); err == nil && uc.Subject != "" {
		c := savedCred{file: home, key: uc.Subject}
		if uc.Expires != 0 {
			c.expires = time.Unix(uc.Expires, 0).Format(time.RFC3339)
			c.expired = now.Unix() >= uc.Expires
		}
		out = append(out, c)
	}
	if info.UserKey != "" && (len(out) == 0 || out[0].key != info.UserKey) {
		file := info.Creds
		if file == "" {
			file = "named in " + e.path(natsInfoFile)
		}
		c := savedCred{file: file, key: info.UserKey, expires: info.ExpiresAt}
		if exp, err := time.Parse(time.RFC3339, info.ExpiresAt); err == nil {
			c.expired = !now.Before(exp)
		}
		out = append(out, c)
	}
	return out
}

// unrevokedFiles names the files of $SQLGATE_HOME that logout keeps for
// the credentials it could not revoke: nats.creds for its own, nats.json
// for the one it names (and for nats.creds when it names none).
func (e *env) unrevokedFiles(info natsInfo, creds []savedCred) []string {
	var keepCreds, keepInfo bool
	for _, c := range creds {
		if c.err == nil {
			continue
		}
		if c.file == e.path(natsCredsOut) {
			keepCreds = true
		}
		if c.key == info.UserKey {
			keepInfo = true
		}
	}
	var keep []string
	if keepCreds {
		keep = append(keep, natsCredsOut)
	}
	if keepInfo || (keepCreds && info.UserKey == "") {
		keep = append(keep, natsInfoFile)
	}
	return keep
}

// revokeSavedNATS revokes the saved NATS credentials that have not expired
// through the API (a lease id is a user key), setting each one's err. The
// one nats.json names is revoked only when it was issued to this sign-in;
// the broker refuses a key that is not the caller's.
func (e *env) revokeSavedNATS(ctx context.Context, brokerFlag string, info natsInfo, creds []savedCred) {
	if !slices.ContainsFunc(creds, func(c savedCred) bool { return !c.expired }) {
		return
	}
	client, st, err := e.logoutClient(ctx, brokerFlag, info)
	for i := range creds {
		c := &creds[i]
		switch {
		case c.expired:
		case err != nil:
			c.err = err
		case st != nil && c.key == info.UserKey && (info.Principal == "" || info.Principal != st.Principal || !sameBroker(info.Broker, st.Broker)):
			c.err, c.final = errors.New("it was issued to another sign-in"), true
		default:
			_, c.err = client.RevokeLease(ctx, c.key)
			var se *api.StatusError
			if errors.As(c.err, &se) && se.Status == http.StatusNotFound {
				c.err, c.final = fmt.Errorf("the broker knows no such credential of yours: %w", c.err), true
			}
		}
	}
}

// logoutClient returns the client logout revokes with and the state it
// read: the broker signed in to (--broker must name it). When the state
// does not parse (st is nil), the broker signed in to is unknown, and the
// one --broker or $SQLGATE_BROKER names gets the token only when nats.json
// records that it issued the credentials and it trusts the identity
// provider that issued the token.
func (e *env) logoutClient(ctx context.Context, brokerFlag string, info natsInfo) (client *api.Client, st *state, err error) {
	st, err = e.loadState()
	var corrupt *corruptStateError
	switch {
	case err == nil:
		url := brokerFlag
		if url == "" {
			url = st.Broker
		}
		client, err = e.client(url)
		return client, st, err
	case !errors.As(err, &corrupt):
		return nil, nil, err
	case brokerFlag == "" && e.getenv("SQLGATE_BROKER") == "":
		return nil, nil, fmt.Errorf("the CLI state %s is unreadable (%w), so the broker you signed in to is unknown: pass --broker URL (or set SQLGATE_BROKER)", corrupt.path, corrupt.err)
	}
	url, err := e.brokerURL(brokerFlag, &state{})
	if err != nil {
		return nil, nil, err
	}
	switch {
	case info.Broker == "":
		// Nothing recorded says which broker the token belongs to: its
		// identity provider proves nothing (any broker trusting the same
		// one, or a server echoing its issuer, would pass), so the token
		// goes nowhere.
		return nil, nil, fmt.Errorf("the CLI state %s is unreadable (%w) and no saved NATS credential records the broker that issued it, "+
			"so the token is not sent to %s: run sqlgate login (it replaces the state), then sqlgate logout", corrupt.path, corrupt.err, url)
	case !sameBroker(url, info.Broker):
		return nil, nil, fmt.Errorf("the saved NATS credentials were issued by %s, not %s: pass --broker %s", api.RedactURL(info.Broker), url, api.RedactURL(info.Broker))
	}
	tok, err := e.loadTokens()
	if err != nil {
		return nil, nil, err
	}
	anon, err := api.NewClient(url, nil)
	if err != nil {
		return nil, nil, err
	}
	disc, err := anon.Discovery(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("ask %s which identity provider it trusts: %w", url, err)
	}
	if disc.Issuer != tok.Issuer {
		return nil, nil, fmt.Errorf("%s trusts the identity provider %s, not %s, which signed you in: it is not the broker you signed in to", url, disc.Issuer, tok.Issuer)
	}
	client, err = api.NewClient(url, e.accessToken)
	return client, nil, err
}

// readPassword reads one line from stdin.
func readPassword(e *env) (string, error) {
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("--password-stdin: no password on standard input")
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("--password-stdin: empty password")
	}
	return pw, nil
}

func readSecret(e *env, file, envName string) (string, error) {
	switch {
	case file != "" && envName != "":
		return "", usagef("use one of --client-secret-file and --client-secret-env")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read client secret: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case envName != "":
		if v := e.getenv(envName); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("environment variable %s is empty", envName)
	}
	return "", usagef("--client-credentials needs --client-secret-file or --client-secret-env")
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// openBrowser opens url with the platform's opener.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.CommandContext(context.Background(), "open", url)
	case "windows":
		cmd = exec.CommandContext(context.Background(), "rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.CommandContext(context.Background(), "xdg-open", url)
	}
	return cmd.Start()
}
