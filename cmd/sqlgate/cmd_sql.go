package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

func cmdCredsSQL(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "creds sql", "sqlgate creds sql --database DB --role ROLE [--ttl D] [--output json]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	database := fs.String("database", "", "database name (as configured in sqlgated)")
	role := fs.String("role", "", "database role to be a member of (policy decides which you may have)")
	ttl := fs.Duration("ttl", 0, "requested lifetime (policy caps it; default: the policy's)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate creds sql --database DB --role ROLE"); err != nil {
		return err
	}
	if *database == "" || *role == "" {
		return usagef("--database and --role are required")
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
	cred, err := c.SQLCreds(ctx, api.SQLCredsRequest{Database: *database, Role: *role, TTLSeconds: int64(ttl.Seconds())})
	if err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(e.stdout, cred)
	}
	fmt.Fprintf(e.stdout, "SQL login for %s as role %s (lease %s)\n", cred.Database, cred.Role, cred.LeaseID)
	fmt.Fprintf(e.stdout, "  username: %s\n  password: %s\n", cred.Username, cred.Password)
	if cred.DSN != "" {
		fmt.Fprintf(e.stdout, "  connect:  %s\n", cred.DSN)
	}
	fmt.Fprintf(e.stdout, "  expires:  %s (in %s; renewable until %s)\n", cred.ExpiresAt.Local().Format(time.RFC3339),
		time.Until(cred.ExpiresAt).Round(time.Second), cred.MaxExpiry.Local().Format(time.RFC3339))
	if cred.Capped != "" {
		fmt.Fprintf(e.stdout, "  ttl capped: %s\n", cred.Capped)
	}
	fmt.Fprintln(e.stdout, "The password is shown once. Revoke early with: sqlgate leases revoke", cred.LeaseID)
	return nil
}
