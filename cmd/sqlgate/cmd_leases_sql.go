package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

// leaseRenewal is the response of `POST leases/{id}/renew`.
type leaseRenewal struct {
	api.Lease
	MaxExpiry  time.Time `json:"max_expires_at"`
	Capped     string    `json:"capped,omitempty"`
	DecisionID string    `json:"decision_id"`
}

// revokeAllResult is the response of `POST leases/revoke-all`.
type revokeAllResult struct {
	Principal   string      `json:"principal"`
	NATSRevoked []string    `json:"nats_revoked"`
	Leases      []api.Lease `json:"leases"`
	Pending     int         `json:"pending"`
}

// leaseClient calls the lease endpoints that api.Client does not cover
// (renew, revoke-all).
type leaseClient struct {
	base  string
	http  *http.Client
	token func(ctx context.Context) (string, error)
}

func (e *env) leaseClient(brokerFlagValue string) (*leaseClient, error) {
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	base, err := e.brokerURL(brokerFlagValue, st)
	if err != nil {
		return nil, err
	}
	if _, err := api.NewClient(base, nil); err != nil { // same URL checks as every other command
		return nil, err
	}
	return &leaseClient{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 60 * time.Second}, token: e.accessToken}, nil
}

// post sends a JSON request and decodes the JSON response; a non-2xx
// answer is an *api.StatusError.
func (c *leaseClient) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+api.Prefix+path, bytes.NewReader(b)) //nolint:gosec // G704: the URL is the broker the user configured
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	tok, err := c.token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req) //nolint:gosec // G704: the URL is the broker the user configured
	if err != nil {
		return fmt.Errorf("%w: %w", api.ErrUnreachable, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body := io.LimitReader(resp.Body, 16<<20)
	if resp.StatusCode/100 != 2 {
		se := &api.StatusError{Status: resp.StatusCode}
		var eb api.ErrorResponse
		if json.NewDecoder(body).Decode(&eb) == nil {
			se.Body = eb.Error
		}
		return se
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, err)
	}
	return nil
}

func cmdLeasesRenew(ctx context.Context, e *env, args []string) error {
	const usage = "sqlgate leases renew ID [--ttl D] [--output json]"
	fs := newFlags(e, "leases renew", usage)
	broker, output := brokerFlag(fs), outputFlag(fs)
	ttl := fs.Duration("ttl", 0, "extend by this long from now (policy and the credential's maximum cap it; default: the default lifetime)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 1, usage); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if *ttl < 0 {
		return usagef("--ttl must not be negative")
	}
	c, err := e.leaseClient(*broker)
	if err != nil {
		return err
	}
	var r leaseRenewal
	if err := c.post(ctx, "/leases/"+url.PathEscape(pos[0])+"/renew", map[string]int64{"ttl_seconds": int64(ttl.Seconds())}, &r); err != nil {
		return err
	}
	return printRenewal(e, *output, &r)
}

func printRenewal(e *env, output string, r *leaseRenewal) error {
	if output == "json" {
		return printJSON(e.stdout, r)
	}
	fmt.Fprintf(e.stdout, "renewed %s credential %s (%s): expires %s; renewable until %s\n", r.Type, r.ID, r.Username,
		r.ExpiresAt.Local().Format(time.RFC3339), r.MaxExpiry.Local().Format(time.RFC3339))
	if r.Capped != "" {
		fmt.Fprintf(e.stdout, "  capped: %s\n", r.Capped)
	}
	return nil
}

func cmdLeasesRevokeAll(ctx context.Context, e *env, args []string) error {
	const usage = `sqlgate leases revoke-all --principal "ISSUER SUBJECT" [--reason TEXT] [--output json]`
	fs := newFlags(e, "leases revoke-all", usage)
	broker, output := brokerFlag(fs), outputFlag(fs)
	principal := fs.String("principal", "", `the principal to offboard: "<issuer> <subject>" (admins only)`)
	reason := fs.String("reason", "", "why, for the audit log")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, usage); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if *principal == "" {
		return usagef("--principal is required")
	}
	c, err := e.leaseClient(*broker)
	if err != nil {
		return err
	}
	var r revokeAllResult
	if err := c.post(ctx, "/leases/revoke-all", map[string]string{"principal": *principal, "reason": *reason}, &r); err != nil {
		return err
	}
	return printRevokeAll(e, *output, &r)
}

func printRevokeAll(e *env, output string, r *revokeAllResult) error {
	if output == "json" {
		if err := printJSON(e.stdout, r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "revoked for %s: %d NATS credential(s), %d SQL credential(s)\n", r.Principal, len(r.NATSRevoked), len(r.Leases)-r.Pending)
		for _, l := range r.Leases {
			fmt.Fprintf(e.stdout, "  %s %s %s/%s: %s\n", l.ID, l.Username, l.Database, l.Role, l.State)
		}
	}
	if r.Pending > 0 {
		fmt.Fprintf(e.stderr, "%d SQL credential(s) are still being revoked (a database was unreachable); sqlgated retries until they are gone\n", r.Pending)
		return errSilent
	}
	return nil
}
