package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	neturl "net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

// brokerFlag registers --broker on fs.
func brokerFlag(fs *flag.FlagSet) *string {
	return fs.String("broker", "", "broker URL (default $SQLGATE_BROKER, else the one saved at login)")
}

// outputFlag registers --output on fs.
func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", "text", "output format: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usagef("--output must be text or json")
	}
	return nil
}

// brokerURL resolves the broker: flag, else $SQLGATE_BROKER, else state.
func (e *env) brokerURL(flagValue string, st *state) (string, error) {
	switch {
	case flagValue != "":
		return checkBroker("--broker", flagValue)
	case e.getenv("SQLGATE_BROKER") != "":
		return checkBroker("$SQLGATE_BROKER", e.getenv("SQLGATE_BROKER"))
	case st.Broker != "":
		return checkBroker("the broker saved at login", st.Broker)
	}
	return "", fmt.Errorf("no broker known: pass --broker URL, set SQLGATE_BROKER, or run sqlgate login --broker URL")
}

// apiCommand finishes the flags of a command that talks to the API: it
// adds --broker and --output, parses args, checks that nargs positional
// arguments were given, and returns the client, the output format and the
// arguments.
func (e *env) apiCommand(fs *flag.FlagSet, args []string, nargs int, usage string) (*api.Client, string, []string, error) {
	broker, output := brokerFlag(fs), outputFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return nil, "", nil, err
	}
	if err := wantArgs(pos, nargs, usage); err != nil {
		return nil, "", nil, err
	}
	if err := checkOutput(*output); err != nil {
		return nil, "", nil, err
	}
	c, err := e.client(*broker)
	return c, *output, pos, err
}

// client returns an authenticated API client. The stored sign-in goes only
// to the broker it was made for: a --broker or $SQLGATE_BROKER naming
// another one is refused, so that the bearer token is not handed to it.
func (e *env) client(brokerFlagValue string) (*api.Client, error) {
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	url, err := e.brokerURL(brokerFlagValue, st)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Broker == "":
		return nil, fmt.Errorf("not signed in to a broker: run sqlgate login --broker %s", url)
	case !sameBroker(url, st.Broker):
		return nil, fmt.Errorf("signed in to %s; run sqlgate login --broker %s to use %s", api.RedactURL(st.Broker), url, url)
	}
	c, err := api.NewClient(url, e.accessToken)
	if err != nil {
		return nil, err
	}
	return c.WithSignInRefused(newSignInRefusedError), nil
}

// signInRefusedError is a 401 answer of the broker to a signed-in call:
// it does not accept the stored sign-in, though it has not expired here
// (one made with another broker, or with an earlier sqlgated dev, whose
// identity provider had other keys; or one revoked since). Only a new
// sign-in helps.
type signInRefusedError struct{ status *api.StatusError }

func newSignInRefusedError(se *api.StatusError) error { return &signInRefusedError{status: se} }

// tokenInvalid is the broker's message for a token it does not accept;
// others (a sign-in revoked by offboarding) are shown.
const tokenInvalid = "authentication required or token invalid"

func (e *signInRefusedError) Error() string {
	if m := e.status.Body.Message; m != "" && m != tokenInvalid {
		return "the broker refused your sign-in: " + m + ": run sqlgate login"
	}
	return "the broker refused your sign-in (it may come from an earlier sqlgated or another broker): run sqlgate login"
}

func (e *signInRefusedError) Unwrap() error { return e.status }

// sameBroker reports whether two broker URLs name the same broker: scheme
// and host compared without case, the path without a trailing slash.
func sameBroker(a, b string) bool {
	ua, erra := neturl.Parse(strings.TrimRight(a, "/"))
	ub, errb := neturl.Parse(strings.TrimRight(b, "/"))
	if erra != nil || errb != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		ua.Path == ub.Path && ua.User.String() == ub.User.String() && ua.RawQuery == ub.RawQuery
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdWhoAmI(ctx context.Context, e *env, args []string) error {
	c, output, _, err := e.apiCommand(newFlags(e, "whoami", "sqlgate whoami [--output json]"), args, 0, "sqlgate whoami")
	if err != nil {
		return err
	}
	who, err := c.WhoAmI(ctx)
	if err != nil {
		return err
	}
	if output == "json" {
		return printJSON(e.stdout, who)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "subject\t%s\n", who.Subject)
	fmt.Fprintf(tw, "email\t%s\n", who.Email)
	fmt.Fprintf(tw, "name\t%s\n", who.Name)
	fmt.Fprintf(tw, "issuer\t%s\n", who.Issuer)
	fmt.Fprintf(tw, "groups\t%s\n", strings.Join(who.Groups, ", "))
	if len(who.Roles) > 0 {
		fmt.Fprintf(tw, "roles\t%s\n", strings.Join(who.Roles, ", "))
	}
	fmt.Fprintf(tw, "mfa\t%t\n", who.MFA)
	if !who.Expiry.IsZero() {
		fmt.Fprintf(tw, "token expires\t%s (in %s)\n", who.Expiry.Local().Format(time.RFC3339), time.Until(who.Expiry).Round(time.Second))
	}
	return tw.Flush()
}

func cmdRoutes(ctx context.Context, e *env, args []string) error {
	c, output, _, err := e.apiCommand(newFlags(e, "routes", "sqlgate routes [--output json]"), args, 0, "sqlgate routes")
	if err != nil {
		return err
	}
	routes, err := c.Routes(ctx)
	if err != nil {
		return err
	}
	if output == "json" {
		return printJSON(e.stdout, routes)
	}
	if len(routes.Routes) == 0 {
		fmt.Fprintln(e.stdout, "Policy allows you no routes.")
		return nil
	}
	for _, r := range routes.Routes {
		fmt.Fprintf(e.stdout, "%s\n  %s %s on %s (%s, timeout %s)\n", r.Subject, r.Kind, r.Target, r.Database, r.Mode, time.Duration(r.TimeoutMS)*time.Millisecond)
		if r.Description != "" {
			fmt.Fprintf(e.stdout, "  %s\n", r.Description)
		}
		if r.Emit != "" {
			fmt.Fprintf(e.stdout, "  emits: %s (after each commit; the event's Sqlgate-Event header is %s)\n", r.Emit, r.Subject)
		}
		fmt.Fprintf(e.stdout, "  params: %s\n", r.Params)
	}
	return nil
}

func cmdLeasesList(ctx context.Context, e *env, args []string) error {
	c, output, _, err := e.apiCommand(newFlags(e, "leases list", "sqlgate leases list [--output json]"), args, 0, "sqlgate leases list")
	if err != nil {
		return err
	}
	leases, err := c.Leases(ctx)
	if err != nil {
		return err
	}
	if output == "json" {
		return printJSON(e.stdout, leases)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tDATABASE/ROLE\tEXPIRES")
	for _, l := range leases.Leases {
		dbRole := ""
		if l.Database != "" {
			dbRole = l.Database + "/" + l.Role
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.ID, l.Type, l.State, dbRole, l.ExpiresAt.Local().Format(time.RFC3339))
	}
	return tw.Flush()
}

func cmdLeasesRevoke(ctx context.Context, e *env, args []string) error {
	c, output, pos, err := e.apiCommand(newFlags(e, "leases revoke", "sqlgate leases revoke ID"), args, 1, "sqlgate leases revoke ID")
	if err != nil {
		return err
	}
	l, err := c.RevokeLease(ctx, pos[0])
	if err != nil {
		return err
	}
	if output == "json" {
		if err := printJSON(e.stdout, l); err != nil {
			return err
		}
	} else if l.State != "revoking" {
		fmt.Fprintf(e.stdout, "revoked %s credential %s\n", l.Type, l.ID)
	}
	if l.State == "revoking" {
		// Exit 1, as revoke-all does with pending revocations: the login
		// may still work.
		fmt.Fprintf(e.stderr, "the revocation of %s credential %s has not finished yet%s; sqlgated retries until the login is gone\n",
			l.Type, l.ID, lastError(l.LastError))
		return errSilent
	}
	return nil
}

// lastError formats a revoking lease's last error for a message ("" when
// no attempt failed yet).
func lastError(msg string) string {
	if msg == "" {
		return ""
	}
	return " (last attempt: " + msg + ")"
}
