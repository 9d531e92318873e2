package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/web/api"
)

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
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	c, err := e.client(*broker)
	if err != nil {
		return err
	}
	r, err := c.RenewLease(ctx, pos[0], *ttl)
	if err != nil {
		return err
	}
	return printRenewal(e, *output, r)
}

func printRenewal(e *env, output string, r *api.LeaseRenewal) error {
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
	if err := checkPrincipalFlag(*principal); err != nil {
		return err
	}
	c, err := e.client(*broker)
	if err != nil {
		return err
	}
	r, err := c.RevokeAll(ctx, *principal, *reason)
	if err != nil {
		return err
	}
	return printRevokeAll(e, *output, r)
}

// checkPrincipalFlag refuses, as a usage error, a --principal that cannot
// be a principal id (see identity.CheckPrincipalID): an e-mail address or a
// bare subject would offboard nobody while the real user keeps access (the
// broker refuses them too).
func checkPrincipalFlag(id string) error {
	if id == "" {
		return usagef("--principal is required")
	}
	if err := identity.CheckPrincipalID(id); err != nil {
		return usagef("--principal must be %s; %v", identity.PrincipalIDShape, err)
	}
	return nil
}

// printRevokeAll prints a revoke-all's answer. It ends the command with
// exit code 1 (errSilent, after a line on stderr saying why) when a SQL
// credential's revocation has not finished yet, or when nothing the broker
// keeps names the principal (unknown_principal: a mistyped id offboards
// nobody); the answer is printed all the same.
func printRevokeAll(e *env, output string, r *api.RevokeAllResult) error {
	if output == "json" {
		if err := printJSON(e.stdout, r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "revoked for %s: %d NATS credential(s), %d SQL credential(s), %d dashboard session(s)\n", r.Principal, len(r.NATSRevoked), len(r.Leases)-r.Pending, r.SessionsEnded)
		for _, l := range r.Leases {
			fmt.Fprintf(e.stdout, "  %s %s %s/%s: %s%s\n", l.ID, l.Username, l.Database, l.Role, l.State, lastError(l.LastError))
		}
	}
	failed := false
	if r.UnknownPrincipal {
		fmt.Fprintf(e.stderr, "warning: no NATS credential, SQL lease or dashboard session names %q: its sign-ins are cut off, "+
			"but if the id is mistyped the person it should name keeps their access. Check it: the issuer and the subject "+
			"(the identity provider's subject, not an e-mail address) exactly as `sqlgate whoami` shows them to that person, "+
			"or as the audit log names them\n", r.Principal)
		failed = true
	}
	if r.Pending > 0 {
		fmt.Fprintf(e.stderr, "the revocation of %d SQL credential(s) has not finished yet; sqlgated retries until the logins are gone\n", r.Pending)
		failed = true
	}
	if failed {
		return errSilent
	}
	return nil
}
