package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the sqlgate HTTP API. It is safe for concurrent use.
//
// No limit covers a whole download (an audit export or evidence archive,
// the recorded decision inputs): those run as long as data keeps coming.
// A JSON call is bounded as a whole; connecting, the TLS handshake, the
// wait for a download's response and every pause in its body are bounded
// on their own.
type Client struct {
	base  *url.URL
	http  *http.Client
	token func(ctx context.Context) (string, error)
	// callTimeout bounds a JSON call (request, response and decoding);
	// downloadWait bounds the wait for a download's response headers (the
	// broker builds an evidence archive before it answers); downloadIdle
	// fails a download whose body delivers nothing for that long. Tests
	// shorten them.
	callTimeout, downloadWait, downloadIdle time.Duration
	// refused, when set, is what an authenticated call returns for a 401
	// answer (see [Client.WithSignInRefused]).
	refused func(*StatusError) error
}

// The limits of a [Client] (see its fields).
const (
	callTimeout  = 60 * time.Second
	downloadWait = 10 * time.Minute
	downloadIdle = 2 * time.Minute
)

// newTransport is the default transport (proxy from the environment, HTTP/2)
// with bounds on connecting and on the TLS handshake; the rest is bounded
// per call.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	return t
}

// NewClient returns a client for the broker at baseURL. token supplies the
// bearer token per request (nil for unauthenticated calls only).
func NewClient(baseURL string, token func(ctx context.Context) (string, error)) (*Client, error) {
	u, err := parseBrokerURL(baseURL)
	if err != nil {
		return nil, err
	}
	return &Client{
		base: u, http: &http.Client{Transport: newTransport(), CheckRedirect: RefuseRedirect}, token: token,
		callTimeout: callTimeout, downloadWait: downloadWait, downloadIdle: downloadIdle,
	}, nil
}

// CheckBrokerURL returns why raw cannot be the URL of a broker, the error
// [NewClient] would fail with, or nil: it must be an absolute http(s) URL,
// https unless to this machine's loopback, without a user name or password.
// The error of a host and port without a scheme shows the URL meant.
func CheckBrokerURL(raw string) error {
	_, err := parseBrokerURL(raw)
	return err
}

func parseBrokerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("broker URL %q must be an http(s) URL%s", RedactURL(raw), schemeHint(raw))
	}
	if err := RequireTLS("broker", u.String()); err != nil {
		return nil, err
	}
	if u.User != nil {
		return nil, fmt.Errorf("broker URL %s must not hold a user name or password: sqlgate signs in with its own tokens", redactUser(u))
	}
	return u, nil
}

// schemeHint suggests the URL meant by raw when it is a host and port
// without a scheme (127.0.0.1:8470): http on this machine's loopback, else
// https; "" for anything else.
func schemeHint(raw string) string {
	if raw == "" || strings.Contains(raw, "://") || strings.ContainsAny(raw, "@ ") {
		return ""
	}
	host := strings.TrimRight(raw, "/")
	u, err := url.Parse("http://" + host)
	if err != nil || u.Host == "" || u.Host != host {
		return ""
	}
	if isLoopback(u.Hostname()) {
		return ", like http://" + host
	}
	return ", like https://" + host
}

// WithSignInRefused returns a copy of c whose authenticated calls return
// refused(se) for a 401 answer se, a bearer token the broker does not
// accept, so that the caller can say how to sign in again. An
// unauthenticated call's 401 stays a [*StatusError].
func (c *Client) WithSignInRefused(refused func(se *StatusError) error) *Client {
	cc := *c
	cc.refused = refused
	return &cc
}

// RedirectError is a broker answer that redirects elsewhere. The sqlgate API
// never redirects, and following one would resend the bearer token (and a
// request body holding a public key or a lease request) to the new
// location, over plain http when it says so: so no redirect is followed.
type RedirectError struct {
	// Location is the redirect's target without its user name and password.
	Location string
}

// Error implements error.
func (e *RedirectError) Error() string {
	return fmt.Sprintf("the broker answered with a redirect to %s, which sqlgate does not follow (the sqlgate API never redirects; "+
		"the token would go along): use the broker's own URL", e.Location)
}

// RefuseRedirect is a CheckRedirect that follows no redirect: every client
// that sends the bearer token to the broker uses it.
func RefuseRedirect(req *http.Request, _ []*http.Request) error {
	return &RedirectError{Location: redactUser(req.URL)}
}

// redactUser returns u without its user name and password.
func redactUser(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// RedactURL returns raw with the user name and password of its authority,
// if any, replaced by REDACTED, so that an error can name the URL. It works
// on text that does not parse as a URL too. Unless raw parses with a user,
// everything from after "//" (or the start) to the last '@' is the user
// and password: a password holding an unescaped '/', '?' or '#'
// (https://u:12/ss@host) parses as a host and a path, or not at all.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return redactUser(u)
	}
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "//"); i >= 0 && i < at {
		start = i + 2
	}
	return raw[:start] + "REDACTED" + raw[at:]
}

// RequireTLS refuses anything but an https URL, or a plain http one to this
// machine's loopback: tokens, passwords and client secrets would cross the
// network in clear. what names the URL in the error ("broker", "identity
// provider").
func RequireTLS(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s URL %q is not an absolute URL", what, RedactURL(raw))
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%s URL %s must be https", what, RedactURL(raw))
	}
	if isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%s URL %s is plain http to another host: credentials would cross the network in clear; use https", what, RedactURL(raw))
}

// StatusError is a non-2xx response.
type StatusError struct {
	Status int
	Body   Error
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s (HTTP %d)", e.Body.Message, e.Status)
	if e.Body.Message == "" {
		msg = fmt.Sprintf("HTTP %d", e.Status)
	}
	if len(e.Body.Reasons) > 0 {
		msg += ": " + strings.Join(e.Body.Reasons, "; ")
	}
	return msg
}

// ErrUnreachable marks a broker that could not be reached.
var ErrUnreachable = errors.New("broker unreachable")

// unreachableHint is what to check when connecting to the broker failed
// (nothing listens there, a name that does not resolve): whether sqlgated
// runs there, which make run does on this machine, and the URL. Other
// failures (TLS, a timeout) get none.
func (c *Client) unreachableHint(err error) string {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return ""
	}
	if isLoopback(c.base.Hostname()) {
		return ": is sqlgated running there (make run starts it), and is the broker URL right?"
	}
	return ": is sqlgated running there, and is the broker URL right?"
}

// isLoopback reports whether host names this machine's loopback.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Discovery fetches the unauthenticated client configuration.
func (c *Client) Discovery(ctx context.Context) (*Discovery, error) {
	var out Discovery
	return &out, c.do(ctx, http.MethodGet, "/config", nil, &out, false)
}

// WhoAmI returns the caller's identity as the broker sees it.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	return &out, c.do(ctx, http.MethodGet, "/whoami", nil, &out, true)
}

// Routes lists the routes the caller may call.
func (c *Client) Routes(ctx context.Context) (*Routes, error) {
	var out Routes
	return &out, c.do(ctx, http.MethodGet, "/routes", nil, &out, true)
}

// NATSCreds asks for a NATS user JWT for a public key.
func (c *Client) NATSCreds(ctx context.Context, req NATSCredsRequest) (*NATSCreds, error) {
	var out NATSCreds
	return &out, c.do(ctx, http.MethodPost, "/nats/creds", req, &out, true)
}

// SQLCreds asks for a short-lived SQL login.
func (c *Client) SQLCreds(ctx context.Context, req SQLCredsRequest) (*SQLCreds, error) {
	var out SQLCreds
	return &out, c.do(ctx, http.MethodPost, "/sql/creds", req, &out, true)
}

// Leases lists all the caller's credentials, newest first, reading every
// page (the broker sends at most 1000 at a time).
func (c *Client) Leases(ctx context.Context) (*Leases, error) {
	all := &Leases{Leases: []Lease{}}
	for cursor := ""; ; {
		page, err := c.LeasesPage(ctx, 1000, cursor)
		if err != nil {
			return nil, err
		}
		all.Leases = append(all.Leases, page.Leases...)
		if page.Next == "" {
			return all, nil
		}
		if page.Next == cursor {
			return nil, fmt.Errorf("leases: the broker answered the same page twice (cursor %q)", cursor)
		}
		cursor = page.Next
	}
}

// LeasesPage lists one page of the caller's credentials, newest first: at
// most limit (0: the server's default), after cursor (a previous page's
// Next; "" for the first page).
func (c *Client) LeasesPage(ctx context.Context, limit int, cursor string) (*Leases, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	path := "/leases"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out Leases
	return &out, c.do(ctx, http.MethodGet, path, nil, &out, true)
}

// RevokeLease revokes one credential by id.
func (c *Client) RevokeLease(ctx context.Context, id string) (*Lease, error) {
	var out Lease
	return &out, c.do(ctx, http.MethodDelete, "/leases/"+url.PathEscape(id), nil, &out, true)
}

// RenewLease extends a SQL credential lease (ttl 0: the default lifetime).
func (c *Client) RenewLease(ctx context.Context, id string, ttl time.Duration) (*LeaseRenewal, error) {
	var out LeaseRenewal
	return &out, c.do(ctx, http.MethodPost, "/leases/"+url.PathEscape(id)+"/renew", LeaseRenewRequest{TTLSeconds: int64(ttl / time.Second)}, &out, true)
}

// RevokeAll revokes every credential of a principal (admins; offboarding).
// A result with Pending > 0 has revocations the broker keeps retrying.
func (c *Client) RevokeAll(ctx context.Context, principalID, reason string) (*RevokeAllResult, error) {
	var out RevokeAllResult
	return &out, c.do(ctx, http.MethodPost, "/leases/revoke-all", RevokeAllRequest{Principal: principalID, Reason: reason}, &out, true)
}

// PolicyEval evaluates an input document against the serving policy.
func (c *Client) PolicyEval(ctx context.Context, entry string, input json.RawMessage, explain bool) (json.RawMessage, error) {
	var out json.RawMessage
	body := map[string]any{"entry": entry, "input": input, "explain": explain}
	return out, c.do(ctx, http.MethodPost, "/policy/eval", body, &out, true)
}

// PolicyInputs streams the recorded decision inputs since a time (RFC 3339)
// or a duration back from now ("24h") into w, as JSON lines (admins).
func (c *Client) PolicyInputs(ctx context.Context, since string, w io.Writer) error {
	return c.download(ctx, "/policy/inputs?"+url.Values{"since": {since}}.Encode(), "decision inputs", w)
}

// AuditCheckpoint returns the latest signed checkpoint.
func (c *Client) AuditCheckpoint(ctx context.Context) ([]byte, error) {
	return c.raw(ctx, "/audit/checkpoint", nil)
}

// AuditProof returns the inclusion proof (receipt) of one record.
func (c *Client) AuditProof(ctx context.Context, index int64) ([]byte, error) {
	return c.raw(ctx, "/audit/proof", url.Values{"index": {strconv.FormatInt(index, 10)}})
}

// AuditExport streams an offline-verifiable bundle of records [from, to)
// (to <= 0: up to the latest) into w.
func (c *Client) AuditExport(ctx context.Context, w io.Writer, from, to int64) error {
	q := url.Values{"from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}}
	return c.download(ctx, "/audit/export?"+q.Encode(), "audit export", w)
}

// AuditExportRequest is the body of POST /audit/export: the tree sizes of
// the caller's trusted checkpoint copies to carry consistency proofs from
// (at most audit.MaxProofSizes).
type AuditExportRequest struct {
	Proofs []int64 `json:"proofs"`
}

// AuditExportProofs is AuditExport with consistency proofs from the tree
// sizes proofs (those of the caller's trusted checkpoint copies) to each
// origin's first exported record, so copies older than it can be checked.
// The sizes go in the body of a POST: in the URL of a GET a few thousand
// outgrow the broker's header limit (HTTP 431). A broker that takes only
// GET (405) is asked again with them in the query string.
func (c *Client) AuditExportProofs(ctx context.Context, w io.Writer, from, to int64, proofs []int64) error {
	q := url.Values{"from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}}
	if len(proofs) == 0 {
		return c.download(ctx, "/audit/export?"+q.Encode(), "audit export", w)
	}
	body, err := json.Marshal(AuditExportRequest{Proofs: proofs})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	err = c.downloadBody(ctx, http.MethodPost, "/audit/export?"+q.Encode(), body, "audit export", w)
	if se := (*StatusError)(nil); !errors.As(err, &se) || se.Status != http.StatusMethodNotAllowed {
		return err
	}
	// Nothing was written to w: the broker refused before its first byte.
	sizes := make([]string, len(proofs))
	for i, n := range proofs {
		sizes[i] = strconv.FormatInt(n, 10)
	}
	q.Set("proofs", strings.Join(sizes, ","))
	return c.download(ctx, "/audit/export?"+q.Encode(), "audit export", w)
}

// AuditEvidence downloads the SOC 2 evidence archive (zip) of [from, to)
// into w (auditors only).
func (c *Client) AuditEvidence(ctx context.Context, w io.Writer, from, to time.Time) error {
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	return c.download(ctx, "/audit/evidence?"+q.Encode(), "audit evidence", w)
}

// download copies the body of a GET into w, for as long as it takes while
// data keeps coming: it fails when the response headers take longer than
// c.downloadWait or the body delivers nothing for c.downloadIdle.
func (c *Client) download(ctx context.Context, path, what string, w io.Writer) error {
	return c.downloadBody(ctx, http.MethodGet, path, nil, what, w)
}

// downloadBody is [Client.download] with a method and a JSON request body
// (nil: none).
func (c *Client) downloadBody(ctx context.Context, method, path string, in []byte, what string, w io.Writer) error {
	bearer, err := c.bearer(ctx, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	waiting := time.AfterFunc(c.downloadWait, func() {
		cancel(fmt.Errorf("the broker did not answer within %s", c.downloadWait))
	})
	var req io.Reader
	if in != nil {
		req = bytes.NewReader(in)
	}
	resp, err := c.send(ctx, method, path, req, bearer)
	waiting.Stop()
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body := &idleReader{r: resp.Body, idle: c.downloadIdle, stall: time.AfterFunc(c.downloadIdle, func() {
		cancel(fmt.Errorf("the download stalled: nothing received for %s", c.downloadIdle))
	})}
	body.stall.Stop()
	if _, err := io.Copy(w, body); err != nil {
		return fmt.Errorf("read %s: %w", what, causeOf(ctx, err))
	}
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// idleReader arms stall around every Read, so that a body that delivers
// nothing for its duration is cancelled; the time between Reads (the
// writer's) does not count.
type idleReader struct {
	r     io.Reader
	idle  time.Duration
	stall *time.Timer
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.stall.Reset(r.idle)
	n, err := r.r.Read(p)
	r.stall.Stop()
	return n, err
}

func (c *Client) raw(ctx context.Context, path string, q url.Values) ([]byte, error) {
	if q != nil {
		path += "?" + q.Encode()
	}
	bearer, err := c.bearer(ctx, true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	resp, err := c.send(ctx, http.MethodGet, path, nil, bearer)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", causeOf(ctx, err))
	}
	return b, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any, auth bool) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	bearer, err := c.bearer(ctx, auth)
	if err != nil {
		return err
	}
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	resp, err := c.send(ctx, method, path, body, bearer)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, causeOf(ctx, err))
	}
	return nil
}

// bounded limits a JSON call to c.callTimeout. The bearer token is fetched
// before: renewing it may wait for another sqlgate process.
func (c *Client) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, c.callTimeout, fmt.Errorf("no complete answer from the broker within %s", c.callTimeout))
}

// causeOf returns why ctx ended when it did (a limit of the client, the
// caller's cancellation), else err.
func causeOf(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// bearer returns the bearer token for an authenticated call ("" for an
// unauthenticated one).
func (c *Client) bearer(ctx context.Context, auth bool) (string, error) {
	if !auth {
		return "", nil
	}
	if c.token == nil {
		return "", errors.New("not signed in")
	}
	return c.token(ctx)
}

// send performs the request and turns non-2xx responses into *StatusError.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, bearer string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+Prefix+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if re := (*RedirectError)(nil); errors.As(err, &re) {
		return nil, re
	}
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w%s", ErrUnreachable, c.base.Host, causeOf(ctx, err), c.unreachableHint(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer func() { _ = resp.Body.Close() }()
	se := &StatusError{Status: resp.StatusCode}
	var eb ErrorResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb); err == nil {
		se.Body = eb.Error
	}
	if se.Status == http.StatusUnauthorized && bearer != "" && c.refused != nil {
		return nil, c.refused(se)
	}
	return nil, se
}
