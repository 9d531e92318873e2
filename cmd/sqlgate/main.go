// Command sqlgate is the command-line client of sqlgate: sign in with company
// SSO, get short-lived NATS and SQL credentials, call routed subjects, test
// and evaluate policies, and verify the audit log offline.
//
// It talks to the broker's HTTP API and to NATS; it links no SQL driver and
// no NATS server. State (broker URL, tokens, NATS credentials) lives under
// $SQLGATE_HOME, default the user's config directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env carries what every command needs.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	home           string
	getenv         func(string) string
}

// command is one (sub)command.
type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) error
	sub     map[string]*command
	// stateless commands need no state directory (a container image
	// has no home).
	stateless bool
}

func commands() map[string]*command {
	return map[string]*command{
		"login":  {summary: "sign in with the identity provider (browser, --device, --username/--password-stdin, --client-credentials)", run: cmdLogin},
		"logout": {summary: "revoke the saved NATS credentials at the broker, then forget them and the saved tokens", run: cmdLogout},
		"whoami": {summary: "show who the broker thinks you are", run: cmdWhoAmI},
		"routes": {summary: "list the routes you may call, with their parameter schemas", run: cmdRoutes},
		"call":   {summary: "call a routed subject over NATS: sqlgate call SUBJECT JSON", run: cmdCall},
		"creds": {summary: "get short-lived credentials", sub: map[string]*command{
			"nats": {summary: "NATS user credentials (key pair generated locally; only the public key is sent)", run: cmdCredsNATS},
			"sql":  {summary: "a short-lived SQL login for a database role", run: cmdCredsSQL},
		}},
		"leases": {summary: "list and revoke your credentials", sub: map[string]*command{
			"list":       {summary: "list your credentials", run: cmdLeasesList},
			"revoke":     {summary: "revoke a credential by id", run: cmdLeasesRevoke},
			"renew":      {summary: "extend a SQL credential: sqlgate leases renew ID [--ttl D]", run: cmdLeasesRenew},
			"revoke-all": {summary: "offboarding (admins): revoke every credential of a principal", run: cmdLeasesRevokeAll},
		}},
		"policy": {summary: "test, evaluate, check and replay Rego policies", sub: map[string]*command{
			"test":   {summary: "run the policy tests in DIR (like opa test)", run: cmdPolicyTest},
			"eval":   {summary: "evaluate an input document (--input FILE) and print the decision", run: cmdPolicyEval},
			"check":  {summary: "parse, type-check and check route references of the policies in DIR", run: cmdPolicyCheck},
			"replay": {summary: "re-evaluate recorded decisions against a candidate policy and list the changes", run: cmdPolicyReplay},
		}},
		"version": {summary: "print the version", run: cmdVersion, stateless: true},
		"audit": {summary: "verify, prove and export the signed audit log; write SOC 2 evidence", sub: map[string]*command{
			"verify":         {summary: "verify the log offline with public keys only", run: cmdAuditVerify},
			"prove":          {summary: "check the inclusion proof (receipt) of one record: sqlgate audit prove N", run: cmdAuditProve},
			"export":         {summary: "download an offline-verifiable bundle of the log", run: cmdAuditExport},
			"evidence":       {summary: "write SOC 2 evidence for a period (CSV populations, signed checkpoints, manifest) from the verified log", run: cmdAuditEvidence},
			"check-evidence": {summary: "check an evidence archive offline: file hashes, checkpoint and manifest signatures", run: cmdAuditCheckEvidence},
			"keygen":         {summary: "create a key to sign evidence archives with (audit evidence --sign-key)", run: cmdAuditKeygen},
		}},
	}
}

// cmdVersion prints the version; like every command it takes --help.
func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "version", "sqlgate version")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintln(e.stdout, "sqlgate", version)
	return nil
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// run executes the CLI and returns the process exit code: 0 on success, 1
// on failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, stdin, stdout, stderr, os.Getenv)
}

// runEnv is run with the environment given as a function (tests isolate
// SQLGATE_HOME and SQLGATE_BROKER this way).
func runEnv(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 1 && args[0] == "--version" {
		// Needs no state directory, as the version command: a container
		// image has no home.
		fmt.Fprintln(stdout, "sqlgate", version)
		return 0
	}
	cmds := commands()
	path := []string{"sqlgate"}
	for {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			printUsage(stdout, path, cmds)
			if len(args) == 0 {
				return 2
			}
			return 0
		}
		c, ok := cmds[args[0]]
		if !ok {
			fmt.Fprintf(stderr, "%s: unknown command %q\n", strings.Join(path, " "), args[0])
			printUsage(stderr, path, cmds)
			return 2
		}
		path = append(path, args[0])
		args = args[1:]
		if c.sub != nil {
			cmds = c.sub
			continue
		}
		if !c.stateless {
			home, err := stateHome(e.getenv)
			if err != nil {
				fmt.Fprintln(stderr, "sqlgate:", err)
				return 1
			}
			e.home = home
		}
		err := c.run(ctx, e, args)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(*usageError)):
			fmt.Fprintf(stderr, "%s: %v\n", strings.Join(path, " "), err)
			return 2
		case errors.Is(err, errSilent):
			return 1
		default:
			fmt.Fprintf(stderr, "%s: %v\n", strings.Join(path, " "), err)
			return 1
		}
	}
}

// errSilent ends a command with exit code 1 after it printed its own result
// (a failed call envelope, a failed verification report).
var errSilent = errors.New("failed")

func printUsage(w io.Writer, path []string, cmds map[string]*command) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", strings.Join(path, " "))
	names := make([]string, 0, len(cmds))
	width := 8
	for n := range cmds {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s %s\n", width, n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", strings.Join(path, " "))
}

// newFlags returns a flag set that prints its usage to e.stderr and returns
// errors instead of exiting.
func newFlags(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may appear before, between or after positional
// arguments, maps flag errors to usage errors and returns the positional
// arguments. "--" ends flag parsing.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(pos []string, n int, usage string) error {
	if len(pos) != n {
		return usagef("expected %d argument(s): %s", n, usage)
	}
	return nil
}
