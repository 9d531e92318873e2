package opa

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// TestOptions are the options of [Test], named after `opa test`'s flags.
type TestOptions struct {
	// Verbose lists every test and, for failures, the notes and failed
	// expressions (`opa test -v`).
	Verbose bool
	// Coverage prints the JSON coverage report instead of the test list
	// (`opa test --coverage`).
	Coverage bool
	// Threshold fails the run when coverage is below this percentage
	// (`opa test --threshold`); it implies Coverage.
	Threshold float64
	// Run runs only the tests whose names match this regular expression
	// (`opa test --run`).
	Run string
	// Timeout bounds each test (default 5s, as `opa test`).
	Timeout time.Duration
	// FailOnEmpty fails the run when no test ran: the directory holds no
	// tests, or Run matches none (`opa test --fail-on-empty`).
	FailOnEmpty bool
}

// ErrNoTests is returned by [Test] with FailOnEmpty when no test ran.
var ErrNoTests = errors.New("no tests ran")

// Test runs the Rego tests (rules named test_*, in any file, typically
// *_test.rego) of the policy directory dir and writes a report to w, with the
// semantics and output of `opa test DIR`: OPA's loader (data placed by
// directory), Rego v1, OPA's tester and reporters. The files are those the
// engine serves, read as it reads them, plus the test modules: names starting
// with a dot are skipped (a Kubernetes ConfigMap's ..data and timestamped
// directories), symbolic links are followed, data files with duplicate keys
// are refused; module names are relative to dir. It reports passed=false when
// a test fails or errs, and an error when the directory cannot be loaded or
// compiled (or the coverage threshold is not met, or with FailOnEmpty no test
// ran: [ErrNoTests]). Policies are compiled with the capabilities the engine
// serves with, so a test of a builtin the engine refuses (http.send) fails
// here too, and the served modules are also compiled without the tests, as
// the engine compiles them (type-checked against [InputSchema]): a policy
// the engine would refuse is an error wrapping [ErrInvalidPolicy], even when
// its tests pass.
//
// Tests evaluate as `opa test` does, where a built-in function's error (a
// division by zero, a string where a number belongs) makes its expression
// undefined, so `not f(x)` holds; the engine's decisions stop at such an
// error instead and deny. OPA's tester can only fail every test that meets a
// built-in error, which would fail the tests of a lint that relies on them
// (the library's lint checks a time zone with `not time.clock(...)`).
func Test(ctx context.Context, dir string, opts TestOptions, w io.Writer) (passed bool, err error) {
	fsys, err := dirFS(dir)
	if err != nil {
		return false, err
	}
	snap, err := readSnapshot(fsys, true)
	if err != nil {
		return false, fmt.Errorf("load %s: %w", dir, err)
	}
	p, err := snap.parse()
	if err != nil {
		return false, fmt.Errorf("load %s: %w", dir, err)
	}
	modules := p.modules
	served := &parsed{modules: map[string]*ast.Module{}, data: p.data}
	for name, m := range modules {
		if !isTestFile(name) {
			served.modules[name] = m
		}
	}
	if _, err := compile(served, false); err != nil {
		return false, fmt.Errorf("load %s: as served (without the *_test.rego modules): %w", dir, err)
	}
	store := inmem.NewFromObject(p.data)
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return false, err
	}
	defer store.Abort(ctx, txn)

	compiler := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithCapabilities(capabilities()).
		WithUseTypeCheckAnnotations(true)

	coverage := opts.Coverage || opts.Threshold > 0
	var cov *cover.Cover
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		CapturePrintOutput(true).
		EnableTracing(opts.Verbose).
		StackTraces(true).
		SetModules(modules).
		SetTimeout(cmp.Or(opts.Timeout, 5*time.Second)).
		Filter(opts.Run)
	if coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov).SetCoverageRuns([]cover.Kind{cover.KindIndexExcluded, cover.KindEarlyExit})
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return false, err
	}

	var reporter tester.Reporter = tester.PrettyReporter{Verbose: opts.Verbose, Output: w}
	if coverage {
		reporter = tester.JSONCoverageReporter{Cover: cov, Modules: modules, Output: w, Threshold: opts.Threshold, Verbose: opts.Verbose}
	}

	passed = true
	ran := 0
	results := make(chan *tester.Result)
	go func() {
		defer close(results)
		for r := range ch {
			ran++
			if !r.Pass() {
				passed = false
			}
			if opts.Verbose {
				// As `opa test -v`: notes and failed expressions only.
				r.Trace = lineage.Filter(r.Trace, func(e *topdown.Event) bool {
					return e.Op == topdown.NoteOp || e.Op == topdown.FailOp
				})
			}
			results <- r
		}
	}()
	if err := reporter.Report(results); err != nil {
		for range results { // drain, so the goroutine ends
		}
		if !passed {
			// The coverage reporter reports failed tests as an error after
			// printing them: that is a failed run, not a broken one.
			return false, nil
		}
		return false, err // e.g. *cover.CoverageThresholdError
	}
	if opts.FailOnEmpty && ran == 0 {
		if opts.Run != "" {
			return false, fmt.Errorf("%w: no test in %s matches %q", ErrNoTests, dir, opts.Run)
		}
		return false, fmt.Errorf("%w: %s has no test (rules named test_*)", ErrNoTests, dir)
	}
	return passed, nil
}
