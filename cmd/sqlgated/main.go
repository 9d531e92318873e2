// Command sqlgated is the sqlgate daemon: the access broker between NATS
// services and SQL databases. `sqlgated dev` runs everything embedded (NATS,
// an OpenID provider with demo users, a SQLite demo database, demo routes and
// policies, the web UI and API); `sqlgated serve --config FILE` runs against
// real NATS, identity providers and databases; `sqlgated nats-setup --out
// DIR` writes a nats-server configuration for operators who run their own
// NATS cluster.
//
// This is the composition root: the only package that wires concrete
// adapters (SQL drivers, NATS, OPA, OIDC) into the broker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// defaultGCPercent trades memory for CPU: sqlgated's live heap is small
// (tens of MB) and the request path allocates per call, so collecting at
// 4x the live heap instead of 2x saves measurable CPU (make bench). GOGC in
// the environment overrides it.
const defaultGCPercent = 400

// memLimitRatio is the share of the cgroup's memory limit (a container's
// limit) that becomes the Go runtime's soft memory limit: with GOGC at 400
// the heap may grow to five times the live data, and near the soft limit
// the collector works harder instead of the kernel killing the process.
const memLimitRatio = 0.9

// tuneRuntime sets the collector's defaults: GOGC 400 unless GOGC is set,
// and a soft memory limit at 90 % of the cgroup's memory limit unless
// GOMEMLIMIT is set or AUTOMEMLIMIT=off (AUTOMEMLIMIT=0.8 picks another
// share). Without a cgroup limit, or off Linux, there is no soft limit. It
// returns why no limit could be read, if that is worth reporting.
func tuneRuntime() error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	_, err := memlimit.Set(memlimit.WithRatio(memLimitRatio))
	if errors.Is(err, memlimit.ErrCgroupsNotSupported) {
		return nil
	}
	return err
}

// runtimeAttrs are the collector's settings as the runtime applies them,
// for the startup log: gogc (-1: off) and gomemlimit in bytes, or "none".
func runtimeAttrs(memErr error) []any {
	samples := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(samples)
	attrs := []any{"gogc", int64(samples[0].Value.Uint64())}
	if limit := samples[1].Value.Uint64(); limit < math.MaxInt64 {
		attrs = append(attrs, "gomemlimit", limit)
	} else {
		attrs = append(attrs, "gomemlimit", "none")
	}
	if memErr != nil {
		attrs = append(attrs, "gomemlimit_error", memErr.Error())
	}
	return attrs
}

// tuned is what tuneRuntime found at process start, for the startup log.
var tuned struct{ memLimitErr error }

func main() {
	tuned.memLimitErr = tuneRuntime()
	ctx, stop := signalContext(os.Args[1:])
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(*usageError)):
		fmt.Fprintln(os.Stderr, "sqlgated:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "sqlgated:", err)
		os.Exit(1)
	}
}

// signalContext is the context the command args[0] runs under: SIGINT and
// SIGTERM end it, and the command stops cleanly (serve and dev drain, write
// the last audit outcomes and a final checkpoint, and release what they
// hold). SIGHUP's default action would end the process at once, without
// any of that, so it is trapped too:
//
//   - serve is a daemon, and daemons are sent SIGHUP to reload (systemctl
//     reload, kill -HUP); sqlgated reads its configuration at start only
//     (the policy reloads by itself), so serve logs it (hangups,
//     logHangups) and keeps running;
//   - every other command runs in a terminal, and SIGHUP says the terminal
//     is gone: it stops like SIGTERM. `sqlgated dev` used to ignore it,
//     and outlived its terminal holding its data directory's lock and its
//     ports.
func signalContext(args []string) (context.Context, context.CancelFunc) {
	stops := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if len(args) > 0 && args[0] == "serve" {
		hangups = notifyHangups()
	} else {
		stops = append(stops, syscall.SIGHUP)
	}
	return signal.NotifyContext(context.Background(), stops...)
}

// hangups receives the SIGHUPs of a serve process (notifyHangups), for
// serve to log; nil in tests that call run and in the other commands.
var hangups <-chan os.Signal

// notifyHangups traps SIGHUP for the life of the process, for serve
// (signalContext). The channel keeps one signal; later ones are dropped
// while it is full, and still do not end the process.
func notifyHangups() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch
}

// hangupMessage is what serve logs at a SIGHUP.
const hangupMessage = "SIGHUP ignored: configuration is read at start only; restart to apply (the policy reloads by itself while policy.watch is on)"

// logHangups logs hangupMessage for each SIGHUP until ctx ends.
func logHangups(ctx context.Context, ch <-chan os.Signal, log *slog.Logger) {
	if ch == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			log.WarnContext(ctx, hangupMessage)
		}
	}
}

type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

const usage = `usage: sqlgated <command> [flags]

commands:
  dev         run everything embedded for development (NATS, OpenID provider, SQLite demo)
  serve       run against real NATS, identity providers and databases (--config FILE)
  nats-setup  write a nats-server configuration, account JWTs and sentinel creds (--out DIR)
  bench       measure the request path against the bare path (make bench)
  version     print the version

Run 'sqlgated <command> --help' for a command's flags.
`

// run is main without the process: testable, returns errors.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{msg: "a command is required"}
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "nats-setup":
		return runNATSSetup(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sqlgated", version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
}

func newFlags(name string, stderr io.Writer, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
