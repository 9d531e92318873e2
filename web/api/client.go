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
type Client struct {
	base  *url.URL
	http  *http.Client
	token func(ctx context.Context) (string, error)
}

// NewClient returns a client for the broker at baseURL. token supplies the
// bearer token per request (nil for unauthenticated calls only).
func NewClient(baseURL string, token func(ctx context.Context) (string, error)) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("broker URL %q must be an http(s) URL", baseURL)
	}
	if err := RequireTLS("broker", u.String()); err != nil {
		return nil, err
	}
	return &Client{base: u, http: &http.Client{Timeout: 60 * time.Second}, token: token}, nil
}

// RequireTLS refuses anything but an https URL, or a plain http one to this
// machine's loopback: tokens, passwords and client secrets would cross the
// network in clear. what names the URL in the error ("broker", "identity
// provider").
func RequireTLS(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s URL %q is not an absolute URL", what, raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%s URL %s must be https", what, u.Redacted())
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("%s URL %s is plain http to another host: credentials would cross the network in clear; use https", what, u.Redacted())
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

// Leases lists the caller's credentials.
func (c *Client) Leases(ctx context.Context) (*Leases, error) {
	var out Leases
	return &out, c.do(ctx, http.MethodGet, "/leases", nil, &out, true)
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
	resp, err := c.send(ctx, http.MethodGet, "/policy/inputs?"+url.Values{"since": {since}}.Encode(), nil, true)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read decision inputs: %w", err)
	}
	return nil
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
	resp, err := c.send(ctx, http.MethodGet, "/audit/export?"+q.Encode(), nil, true)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read audit export: %w", err)
	}
	return nil
}

// AuditEvidence downloads the SOC 2 evidence archive (zip) of [from, to)
// into w (auditors only).
func (c *Client) AuditEvidence(ctx context.Context, w io.Writer, from, to time.Time) error {
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	resp, err := c.send(ctx, http.MethodGet, "/audit/evidence?"+q.Encode(), nil, true)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read audit evidence: %w", err)
	}
	return nil
}

func (c *Client) raw(ctx context.Context, path string, q url.Values) ([]byte, error) {
	if q != nil {
		path += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil, true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
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
	resp, err := c.send(ctx, method, path, body, auth)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, err)
	}
	return nil
}

// send performs the request and turns non-2xx responses into *StatusError.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, auth bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+Prefix+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		if c.token == nil {
			return nil, errors.New("not signed in")
		}
		tok, err := c.token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base.Host, err)
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
	return nil, se
}
