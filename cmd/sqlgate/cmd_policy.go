package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"iter"
	"os"
	"strings"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

func cmdPolicyTest(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy test", "sqlgate policy test DIR [-v] [--coverage] [--threshold N] [--run REGEX] [--fail-on-empty=false]")
	verbose := fs.Bool("v", false, "list every test, with notes for failures (opa test -v)")
	coverage := fs.Bool("coverage", false, "print the coverage report (opa test --coverage)")
	threshold := fs.Float64("threshold", 0, "fail below this coverage percentage")
	runRE := fs.String("run", "", "run only tests whose names match this regular expression")
	failOnEmpty := fs.Bool("fail-on-empty", true, "fail when no test ran (no tests in DIR, or --run matches none); --fail-on-empty=false allows it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 1, "sqlgate policy test DIR"); err != nil {
		return err
	}
	passed, err := opa.Test(ctx, pos[0], opa.TestOptions{Verbose: *verbose, Coverage: *coverage, Threshold: *threshold, Run: *runRE, FailOnEmpty: *failOnEmpty}, e.stdout)
	if err != nil {
		return err
	}
	if !passed {
		return errSilent
	}
	return nil
}

func cmdPolicyEval(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy eval", "sqlgate policy eval --input FILE [--entry call|nats|sql_credentials] [--explain] [--policy DIR]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	inputPath := fs.String("input", "", "the input document (JSON, see docs/policy.md); - reads standard input")
	entry := fs.String("entry", string(policy.Call), "entry point: call, nats or sql_credentials")
	explain := fs.Bool("explain", false, "also print which rules fired and which expressions failed")
	dir := fs.String("policy", "", "evaluate this local policy directory (default: the broker's serving policy; admins)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate policy eval --input FILE"); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if *inputPath == "" {
		return usagef("--input FILE is required")
	}
	var input []byte
	if *inputPath == "-" {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(e.stdin); err != nil {
			return err
		}
		input = buf.Bytes()
	} else if input, err = os.ReadFile(*inputPath); err != nil {
		return err
	}
	ent := policy.Entry(*entry)
	if ent != policy.Call && ent != policy.NATS && ent != policy.SQLCredentials {
		return usagef("--entry must be call, nats or sql_credentials")
	}
	if *dir != "" {
		var text bytes.Buffer
		dec, err := opa.Eval(ctx, *dir, ent, input, *explain, &text)
		// An evaluation error comes with the deny it decided, which is
		// printed (with the error) before failing; any other error (a
		// policy or input that does not load) has no decision to print.
		if err != nil && !errors.Is(err, policy.ErrEvaluation) {
			return err
		}
		if *output == "json" {
			out := map[string]any{"decision": dec, "explanation": text.String()}
			if err != nil {
				out["error"] = err.Error()
			}
			if perr := printJSON(e.stdout, out); perr != nil {
				return perr
			}
		} else if _, werr := e.stdout.Write(text.Bytes()); werr != nil {
			return werr
		}
		if err != nil {
			return errSilent
		}
		return nil
	}
	c, err := e.client(*broker)
	if err != nil {
		return err
	}
	// An input that is not a valid input document is a 400 (an error here).
	res, err := c.PolicyEval(ctx, string(ent), input, *explain)
	if err != nil {
		return err
	}
	var out struct {
		Decision    policy.Decision `json:"decision"`
		Explanation string          `json:"explanation"`
		// Error is the evaluation error the decision (a deny) fell back
		// to, as offline.
		Error string `json:"error"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		return fmt.Errorf("decode the broker's answer: %w", err)
	}
	if out.Decision.ID == "" {
		// Every decision has an id, a fallback deny too: this is none (a
		// broker that answers an input it refused with an empty deny).
		why := out.Explanation
		if why == "" {
			why = strings.Join(out.Decision.Reasons, "; ")
		}
		return fmt.Errorf("the broker did not decide: %s", why)
	}
	if *output == "json" {
		if _, err := e.stdout.Write(append(res, '\n')); err != nil {
			return err
		}
		if out.Error != "" {
			return errSilent
		}
		return nil
	}
	verdict := "deny"
	if out.Decision.Allow {
		verdict = "allow"
	}
	fmt.Fprintf(e.stdout, "%s (serving policy %s, decision %s)\n", verdict, out.Decision.Revision, out.Decision.ID)
	for _, r := range out.Decision.Reasons {
		fmt.Fprintf(e.stdout, "  reason: %s\n", r)
	}
	if out.Error != "" {
		fmt.Fprintf(e.stdout, "  evaluation error: %s\n", out.Error)
	}
	if out.Explanation != "" {
		fmt.Fprintf(e.stdout, "\n%s\n", out.Explanation)
	}
	if out.Error != "" {
		return errSilent
	}
	return nil
}

func cmdPolicyCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy check", "sqlgate policy check DIR [--routes routes.yaml]")
	routes := fs.String("routes", "", "route catalog: every route and parameter the policy names must exist in it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 1, "sqlgate policy check DIR"); err != nil {
		return err
	}
	var catalog []opa.RouteRef
	if *routes != "" {
		data, err := os.ReadFile(*routes)
		if err != nil {
			return err
		}
		if catalog, err = opa.RoutesFromCatalog(data); err != nil {
			return fmt.Errorf("--routes: %w", err)
		}
	}
	problems := opa.Check(ctx, pos[0], catalog)
	for _, p := range problems {
		fmt.Fprintln(e.stdout, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(e.stderr, "%d problem(s)\n", len(problems))
		return errSilent
	}
	fmt.Fprintln(e.stdout, "policy is valid")
	return nil
}

func cmdPolicyReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy replay", "sqlgate policy replay --since D --policy DIR [--baseline DIR] [--inputs FILE] [--fail-on-change] [--fail-on-empty=false]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	since := fs.String("since", "24h", "replay decisions recorded since this RFC 3339 time or this long ago (e.g. 168h)")
	dir := fs.String("policy", "", "the candidate policy directory")
	baseline := fs.String("baseline", "", "the policy directory the decisions were recorded with (e.g. the deployed branch): compare max_rows, timeout_ms, ttl, pub and sub with its decisions (the audit record holds only the redaction)")
	inputs := fs.String("inputs", "", "read recorded inputs from this file (JSON lines from GET /api/v1/policy/inputs) instead of the broker")
	failOnChange := fs.Bool("fail-on-change", false, "exit 1 when any decision or obligation would change (for CI)")
	failOnEmpty := fs.Bool("fail-on-empty", false, "exit 1 when no recorded decision was replayed (default: on with --fail-on-change, so that a CI gate cannot pass by replaying nothing)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if !flagSet(fs, "fail-on-empty") {
		*failOnEmpty = *failOnChange
	}
	if err := wantArgs(pos, 0, "sqlgate policy replay --policy DIR"); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--policy DIR (the candidate policy) is required")
	}
	var recorded bytes.Buffer
	if *inputs != "" {
		data, err := os.ReadFile(*inputs)
		if err != nil {
			return err
		}
		recorded.Write(data)
	} else {
		c, err := e.client(*broker)
		if err != nil {
			return err
		}
		if err := c.PolicyInputs(ctx, *since, &recorded); err != nil {
			return err
		}
	}
	engine, err := opa.Open(ctx, opa.Config{Dir: *dir})
	if err != nil {
		return fmt.Errorf("candidate policy: %w", err)
	}
	defer func() { _ = engine.Close() }()
	var opts opa.ReplayOptions
	if *baseline != "" {
		if opts.Baseline, err = opa.Open(ctx, opa.Config{Dir: *baseline}); err != nil {
			return fmt.Errorf("baseline policy: %w", err)
		}
		defer func() { _ = opts.Baseline.Close() }()
	}
	res, err := opa.Replay(ctx, engine, replayItems(recorded.Bytes()), opts)
	if err != nil {
		return err
	}
	if *output == "json" {
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "replayed %d recorded decisions against %s (revision %s): %d would change\n", res.Replayed, *dir, engine.Revision(), len(res.Changes))
		for _, c := range res.Changes {
			fmt.Fprintf(e.stdout, "  %s  %s  correlation %s  decision %s\n", c.Direction(), c.Entry, c.CorrelationID, c.DecisionID)
			for _, o := range c.Obligations {
				fmt.Fprintf(e.stdout, "      %s: %v -> %v\n", o.Key, o.Was, o.Now)
			}
			for _, r := range c.Reasons {
				fmt.Fprintf(e.stdout, "      now: %s\n", r)
			}
			if c.Error != "" {
				fmt.Fprintf(e.stdout, "      evaluation error: %s\n", c.Error)
			}
			if len(c.Redacted) > 0 {
				fmt.Fprintf(e.stdout, "      note: redacted parameters %v were not visible to the replay\n", c.Redacted)
			}
		}
		if changesLimits(res.Changes) {
			fmt.Fprintln(e.stdout, "note: max_rows and timeout_ms only lower a route's own maxRows and timeout: a value above them has the route's effect")
		}
	}
	if *failOnEmpty && res.Replayed == 0 {
		source := "the broker has no decision inputs recorded since " + *since
		if *inputs != "" {
			source = *inputs + " holds no recorded decision"
		}
		return fmt.Errorf("no decision was replayed: %s (--fail-on-empty=false allows it)", source)
	}
	if *failOnChange && len(res.Changes) > 0 {
		return errSilent
	}
	return nil
}

// changesLimits reports whether any change is of max_rows or timeout_ms.
func changesLimits(changes []opa.Change) bool {
	for _, c := range changes {
		for _, o := range c.Obligations {
			if o.Key == "max_rows" || o.Key == "timeout_ms" {
				return true
			}
		}
	}
	return false
}

// flagSet reports whether the flag called name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// replayItems turns the JSON lines of recorded inputs into replay items.
func replayItems(data []byte) iter.Seq2[opa.ReplayItem, error] {
	return func(yield func(opa.ReplayItem, error) bool) {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for line := 1; sc.Scan(); line++ {
			var l struct {
				Record audit.Record    `json:"record"`
				Input  json.RawMessage `json:"input"`
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				yield(opa.ReplayItem{}, fmt.Errorf("recorded inputs, line %d: %w", line, err))
				return
			}
			r := l.Record
			if r.Entry == "" || r.Allow == nil {
				continue // not a decision (e.g. a credential revocation)
			}
			item := opa.ReplayItem{
				Entry: policy.Entry(r.Entry), CorrelationID: r.CorrelationID, DecisionID: r.DecisionID,
				Allow: *r.Allow, Revision: r.PolicyRevision, Input: l.Input, InputSHA256: r.InputSHA256,
			}
			for name, v := range r.Params {
				if v == audit.ParamRedacted {
					item.Redacted = append(item.Redacted, name)
				}
			}
			if !yield(item, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(opa.ReplayItem{}, err)
		}
	}
}
