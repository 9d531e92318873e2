package opa

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // business-hours rules name IANA zones; minimal images lack the zone files

	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"

	"github.com/sqlgate/sqlgate/policy"
)

// Defaults filled in by [Open].
const (
	DefaultDebounce    = 250 * time.Millisecond
	DefaultEvalTimeout = 100 * time.Millisecond
)

// MinLintTimeout is the least time the lint of a load may take (see
// [Config].EvalTimeout): it reads the whole configuration, and a load is
// not on the request path.
const MinLintTimeout = time.Second

// Config configures an [Engine]. Exactly one of Dir and FS is set.
type Config struct {
	// Dir is the policy directory: Rego modules (*.rego) and data files
	// (*.json, *.yaml, *.yml), each data file placed under the path of its
	// directory as `opa eval -d DIR` does. Test modules (*_test.rego) and
	// names starting with a dot are not served.
	Dir string `json:"dir"`
	// FS is an alternative to Dir, e.g. the embedded rules.FS. It cannot be
	// watched.
	FS fs.FS `json:"-"`
	// Watch reloads the policy when a file under Dir changes, once two reads
	// one Debounce apart find the same content. A policy that fails to load leaves the last good one serving.
	// Dir may be a symbolic link; a re-pointed link or a directory replaced
	// as a whole is noticed, and a directory that can no longer be watched is
	// reported in [Status].LastError.
	Watch bool `json:"watch"`
	// Debounce is the quiet period after a change before reloading
	// (default 250ms).
	Debounce time.Duration `json:"debounce"`
	// EvalTimeout bounds one evaluation (default 100ms); a decision that
	// takes longer is a deny. It also bounds the evaluation of
	// data.sqlgate.lint.problems at each load, though never to less than
	// [MinLintTimeout]: a lint that takes longer refuses the policy.
	EvalTimeout time.Duration `json:"evalTimeout"`
	// Routes, if not nil, is the route catalog the policy serves. Every load
	// then checks the routes, parameters and emit subjects the policy names
	// against it, as [Check] does with a catalog, and refuses a policy that
	// names a route, parameter or emit subject the catalog does not have (a
	// misspelt route in a deny list, a limit's or redact_params' misspelt
	// parameter, a misspelt subject in sub, a constant in pub that is no
	// route subject or one in deny_pub that matches none would silently do
	// nothing). One exception: a route or
	// event granted in data (a key of a `routes` or `events` object) that the
	// catalog lacks grants nothing, so it is served and reported in
	// [Status].Warnings and the log (a policy shared by deployments whose
	// catalogs differ). Likewise, with a non-empty catalog, a policy that
	// does not define data.sqlgate.call (a misspelt package): every call
	// would be denied.
	Routes []RouteRef `json:"-"`
	// Logger receives load and reload events (default: discard).
	Logger *slog.Logger `json:"-"`
	// OnReload, if set, is called after every load attempt that changed the
	// served revision or the error state, including the first load in Open,
	// one call at a time. It must not call [Engine.Reload].
	OnReload func(ReloadEvent) `json:"-"`
	// Now is the clock (default time.Now); policies see it as time.now_ns().
	Now func() time.Time `json:"-"`
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Dir == "" && c.FS == nil:
		errs = append(errs, errors.New("one of dir and FS is required"))
	case c.Dir != "" && c.FS != nil:
		errs = append(errs, errors.New("dir and FS are exclusive"))
	}
	if c.Watch && c.Dir == "" {
		errs = append(errs, errors.New("watch requires dir"))
	}
	if c.Debounce < 0 {
		errs = append(errs, errors.New("debounce must not be negative"))
	}
	if c.EvalTimeout < 0 {
		errs = append(errs, errors.New("evalTimeout must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Debounce == 0 {
		c.Debounce = DefaultDebounce
	}
	if c.EvalTimeout == 0 {
		c.EvalTimeout = DefaultEvalTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ReloadEvent reports one load attempt of the policy.
type ReloadEvent struct {
	// At is when the attempt finished.
	At time.Time
	// Revision is the revision served after the attempt ("" if none) and
	// Previous the one served before it.
	Revision string
	Previous string
	// Changed is true when a new revision is now served.
	Changed bool
	// Err is why the attempt failed (wrapping [ErrInvalidPolicy] for a broken
	// policy); nil on success. On failure the previous revision keeps serving.
	Err error
	// Modules are the served module paths after the attempt.
	Modules []string
}

// Status is the engine's state for health checks (/readyz) and the UI.
type Status struct {
	// Revision is the served policy revision, "" when no policy ever loaded
	// (every decision is then a deny with [policy.ErrNoPolicy]).
	Revision string `json:"revision"`
	// LoadedAt is when the served revision was loaded.
	LoadedAt time.Time `json:"loadedAt"`
	// Modules are the served module paths; Entries the entry points the
	// policy defines.
	Modules []string       `json:"modules"`
	Entries []policy.Entry `json:"entries"`
	// LastAttempt is when the policy was last (re)loaded, successfully or not.
	LastAttempt time.Time `json:"lastAttempt"`
	// LastError is why the last attempt failed and, with Watch, why the
	// policy directory is no longer watched (edits would not load until it
	// is again); nil when neither.
	LastError error `json:"-"`
	// Warnings are what is wrong with the served revision without it being
	// refused, found with [Config].Routes: routes or events it grants that
	// the catalog does not have (they grant nothing), and a policy without
	// data.sqlgate.call (every call of the catalog's routes is denied).
	Warnings []string `json:"warnings,omitempty"`
}

// Ready reports whether a policy is serving.
func (s Status) Ready() bool { return s.Revision != "" }

// Engine decides with a compiled Rego policy. It is safe for concurrent use;
// a reload swaps the compiled policy atomically, so a decision sees either the
// old or the new policy, never a mix.
type Engine struct {
	cfg  Config
	fsys fs.FS
	log  *slog.Logger

	cur    atomic.Pointer[state]
	inputs inputCache

	reloadMu sync.Mutex // serializes loads and OnReload calls

	statusMu    sync.Mutex
	lastAttempt time.Time
	lastErr     error
	watchErr    error // why Dir is not watched, nil when it is (or no watch)

	closeOnce sync.Once
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// prepared is the compiled decision query of one entry and the decision keys
// it evaluates, in order.
type prepared struct {
	query rego.PreparedEvalQuery
	keys  []string
}

// state is one loaded policy: immutable once built.
type state struct {
	revision string
	loadedAt time.Time
	modules  []string
	entries  []policy.Entry
	queries  map[policy.Entry]prepared
	files    map[policy.Entry][]string // modules of each entry package
	txn      storage.Transaction
	data     dataCache
	warnings []string // see Status.Warnings
	// evalOpts are the evaluation options every decision of the state
	// shares (its transaction and data), built once.
	evalOpts []rego.EvalOption
}

// Open loads the policy and, with Watch, starts watching Dir.
//
// Without Watch, a policy that fails to load is an error. With Watch, Open
// fails only when Dir cannot be read or watched: a broken first policy leaves
// the engine denying every decision with [policy.ErrNoPolicy] until a fixed
// policy loads, and is reported through Status, OnReload and the log.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("policy engine config: %w", err)
	}
	cfg = cfg.withDefaults()
	e := &Engine{cfg: cfg, fsys: cfg.FS, log: cfg.Logger}
	if cfg.Dir != "" {
		fsys, err := dirFS(cfg.Dir)
		if err != nil {
			return nil, err
		}
		e.fsys = fsys
	}
	if err := e.Reload(ctx); err != nil && !cfg.Watch {
		return nil, err
	}
	if cfg.Watch {
		if err := e.watch(); err != nil {
			return nil, fmt.Errorf("watch policy directory %s: %w", cfg.Dir, err)
		}
	}
	return e, nil
}

// Reload loads the policy again now. On success the new revision serves from
// the next decision on; on failure the current one keeps serving and the
// error (wrapping [ErrInvalidPolicy] for a broken policy) is returned,
// logged and recorded in [Engine.Status].
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	prev := e.cur.Load()
	st, err := build(ctx, e.fsys, buildOptions{now: e.cfg.Now, routes: e.cfg.Routes, lintTimeout: max(e.cfg.EvalTimeout, MinLintTimeout)})
	if err != nil && e.cfg.Dir != "" {
		err = fmt.Errorf("policy directory %s: %w", e.cfg.Dir, err)
	}
	at := e.cfg.Now()

	e.statusMu.Lock()
	prevErr := e.lastErr
	e.lastAttempt, e.lastErr = at, err
	e.statusMu.Unlock()

	ev := ReloadEvent{At: at, Err: err}
	if prev != nil {
		ev.Previous, ev.Revision, ev.Modules = prev.revision, prev.revision, prev.modules
	}
	switch {
	case err != nil:
		if prevErr != nil && prevErr.Error() == err.Error() {
			return err // the same breakage again (e.g. an editor's swap file): reported already
		}
		if prev == nil {
			e.log.LogAttrs(ctx, slog.LevelError, "policy load failed; no policy is loaded, so every request is denied until the policy loads",
				slog.String("error", err.Error()))
			break
		}
		e.log.LogAttrs(ctx, slog.LevelError, "policy load failed; the last good policy keeps serving",
			slog.String("policy_revision", ev.Revision), slog.String("error", err.Error()))
	case prev != nil && prev.revision == st.revision:
		if prevErr == nil {
			return nil // nothing changed
		}
		e.log.LogAttrs(ctx, slog.LevelInfo, "policy loads again", slog.String("policy_revision", st.revision))
	default:
		e.cur.Store(st)
		ev.Revision, ev.Modules, ev.Changed = st.revision, st.modules, true
		e.log.LogAttrs(ctx, slog.LevelInfo, "policy loaded",
			slog.String("policy_revision", st.revision), slog.String("previous_revision", ev.Previous),
			slog.Int("modules", len(st.modules)))
		for _, w := range st.warnings {
			e.log.LogAttrs(ctx, slog.LevelWarn, "policy loaded with a warning: it may not decide what it is meant to",
				slog.String("policy_revision", st.revision), slog.String("warning", w))
		}
	}
	if e.cfg.OnReload != nil {
		e.cfg.OnReload(ev)
	}
	return err
}

// Revision returns the served policy revision, "" when none is loaded.
func (e *Engine) Revision() string {
	if st := e.cur.Load(); st != nil {
		return st.revision
	}
	return ""
}

// Status returns the engine's state.
func (e *Engine) Status() Status {
	var s Status
	if st := e.cur.Load(); st != nil {
		s.Revision, s.LoadedAt = st.revision, st.loadedAt
		s.Modules, s.Entries = slices.Clone(st.modules), slices.Clone(st.entries)
		s.Warnings = slices.Clone(st.warnings)
	}
	e.statusMu.Lock()
	s.LastAttempt, s.LastError = e.lastAttempt, errors.Join(e.lastErr, e.watchErr)
	e.statusMu.Unlock()
	return s
}

// Close stops watching the policy directory and waits for the watcher to
// exit. The engine keeps deciding with the policy it has. Close is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		if e.stopWatch != nil {
			e.stopWatch()
			<-e.watchDone
		}
	})
	return nil
}

// Decide evaluates the policy's entry point for in and returns its decision,
// with a fresh UUIDv7 ID and the revision that decided.
//
// It fails closed: when no policy is loaded the decision is a deny and the
// error wraps [policy.ErrNoPolicy]; when the policy cannot decide (an
// evaluation error, a built-in function's error included, EvalTimeout or
// ctx ending first, an undefined or non-boolean allow, a malformed
// obligation, an input that cannot be converted) the decision is a deny
// whose reason says so in general terms and the error, wrapping
// [policy.ErrEvaluation], says why. The decision is always usable for an
// audit record, error or not.
func (e *Engine) Decide(ctx context.Context, entry policy.Entry, in *policy.Input) (policy.Decision, error) {
	return e.decide(ctx, entry, in, e.cfg.Now(), nil)
}

// decide is Decide at a given evaluation time, optionally traced.
func (e *Engine) decide(ctx context.Context, entry policy.Entry, in *policy.Input, at time.Time, tracer topdown.QueryTracer) (policy.Decision, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return policy.Deny(e.Revision(), "no decision ID"), fmt.Errorf("decide %s: decision id: %w: %w", entry, policy.ErrEvaluation, err)
	}
	st := e.cur.Load()
	if st == nil {
		d := policy.Deny("", "no policy is loaded")
		d.ID = id.String()
		return d, fmt.Errorf("decide %s: %w", entry, policy.ErrNoPolicy)
	}
	fail := func(reasons []string, cause error) (policy.Decision, error) {
		d := policy.Deny(st.revision, reasons...)
		d.ID = id.String()
		return d, fmt.Errorf("decide %s (decision %s): %w: %w", entry, d.ID, policy.ErrEvaluation, cause)
	}
	q, ok := st.queries[entry]
	if !ok {
		return fail([]string{fmt.Sprintf("the policy does not decide %s", entry)},
			fmt.Errorf("the policy defines no %s", entryPath(entry)))
	}
	if in == nil {
		return fail([]string{"no policy input"}, errors.New("nil input"))
	}
	val, err := e.inputs.value(in)
	if err != nil {
		return fail([]string{"the request cannot be evaluated by the policy"}, fmt.Errorf("input: %w", err))
	}

	cancel := topdown.NewCancel()
	timer := time.AfterFunc(e.cfg.EvalTimeout, cancel.Cancel)
	stop := context.AfterFunc(ctx, cancel.Cancel)
	vc := newFlatCache()
	opts := make([]rego.EvalOption, 0, len(st.evalOpts)+5)
	opts = append(opts, st.evalOpts...)
	opts = append(opts, rego.EvalParsedInput(val), rego.EvalExternalCancel(cancel), rego.EvalTime(at), rego.EvalVirtualCache(vc))
	if tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(tracer))
	}
	rs, err := evalRecovered(ctx, q.query, opts)
	vc.release()
	timedOut := !timer.Stop()
	stop()
	switch {
	case err != nil && timedOut:
		return fail([]string{"policy evaluation timed out"}, fmt.Errorf("%w: evaluation took longer than %s", policy.ErrTimeout, e.cfg.EvalTimeout))
	case err != nil && ctx.Err() != nil:
		return fail([]string{"policy evaluation was cancelled"}, context.Cause(ctx))
	case isBuiltinError(err):
		return fail([]string{"policy evaluation failed: a built-in function failed"}, err)
	case err != nil:
		return fail([]string{"policy evaluation failed"}, err)
	}
	doc, err := documentOf(rs, q.keys)
	if err != nil {
		return fail([]string{"policy evaluation failed"}, err)
	}
	allow, reasons, ob, err := doc.decode()
	switch {
	case errors.Is(err, errUndefinedAllow):
		return fail(append(reasons, "the policy did not decide"), err)
	case err != nil:
		return fail([]string{"the policy returned a malformed decision"}, err)
	}
	d := policy.Decision{ID: id.String(), Allow: allow, Reasons: reasons, Revision: st.revision, Obligations: ob}
	if !allow && len(d.Reasons) == 0 {
		d.Reasons = []string{"denied by policy"}
	}
	return d, nil
}

// isBuiltinError reports whether err is a built-in function's error that
// ended an evaluation (see rego.StrictBuiltinErrors): a division by zero
// (eval_builtin_error) or an operand of the wrong type (eval_type_error).
func isBuiltinError(err error) bool {
	var te *topdown.Error
	return errors.As(err, &te) && (te.Code == topdown.BuiltinErr || te.Code == topdown.TypeErr)
}

// evalRecovered evaluates q, turning a panic of the evaluator into an error,
// which the caller turns into a deny. (OPA panics comparing a number it
// cannot hold, such as 1e999999999; InputValue refuses those, and this
// keeps any other such path from crashing a request without a decision.)
func evalRecovered(ctx context.Context, q rego.PreparedEvalQuery, opts []rego.EvalOption) (rs rego.ResultSet, err error) {
	defer func() {
		if p := recover(); p != nil {
			rs, err = nil, fmt.Errorf("the evaluator panicked: %v", p)
		}
	}()
	return q.Eval(ctx, opts...)
}

// buildOptions vary how a policy is compiled: the serving path drops print
// statements, the eval tool keeps them.
type buildOptions struct {
	now    func() time.Time
	prints io.Writer
	// routes, if not nil, is the route catalog the policy must agree with
	// (see Config.Routes).
	routes []RouteRef
	// lintTimeout bounds the lint (0: no bound but ctx).
	lintTimeout time.Duration
}

// build reads, parses, checks, compiles and prepares the policy of fsys.
func build(ctx context.Context, fsys fs.FS, o buildOptions) (*state, error) {
	snap, err := readSnapshot(fsys, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	p, err := snap.parse()
	if err != nil {
		return nil, err
	}
	var warnings []string
	if o.routes != nil {
		var errs []error
		if errs, warnings = checkServedRoutes(p.modules, p.data, o.routes); len(errs) > 0 {
			return nil, fmt.Errorf("%w: the policy names routes or parameters that the route catalog does not have (it would never apply them):\n  %w",
				ErrInvalidPolicy, joinLines(errs))
		}
	}
	if len(o.routes) > 0 {
		// Served, since another entry may be all a deployment needs, but
		// said: a misspelt package (sqlgate.calls) denies every call.
		for _, err := range checkDecidesCalls(p.modules) {
			warnings = append(warnings, err.Error())
		}
	}
	keys, errs := checkContract(p.modules, p.data)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, errors.Join(errs...))
	}
	c, err := compile(p, o.prints != nil)
	if err != nil {
		return nil, err
	}
	dataValue, err := ast.InterfaceToValue(p.data)
	if err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrInvalidPolicy, err)
	}
	dataObj, ok := dataValue.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: data is not an object", ErrInvalidPolicy)
	}
	store := inmem.NewFromObjectWithOpts(p.data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	st := &state{
		revision: snap.revision(),
		data:     dataCache{dataObj},
		loadedAt: o.now(),
		warnings: warnings,
		modules:  slices.Sorted(maps.Keys(p.modules)),
		queries:  map[policy.Entry]prepared{},
		files:    map[policy.Entry][]string{},
	}
	for _, name := range st.modules {
		for _, e := range policy.Entries {
			if p.modules[name].Package.Path.Equal(entryPath(e)) {
				st.files[e] = append(st.files[e], name)
			}
		}
	}
	for _, e := range policy.Entries {
		ks, ok := keys[e]
		if !ok {
			continue
		}
		opts := []func(*rego.Rego){
			rego.Query(decisionQuery(e, ks)),
			rego.Compiler(c),
			rego.Store(store),
			rego.GenerateJSON(keepTerm),
			// A built-in's error (a division by zero, a string where a
			// number belongs) ends the evaluation with an error, a deny,
			// instead of making its expression undefined: by default
			// `not _too_expensive` would then hold and allow.
			rego.StrictBuiltinErrors(true),
		}
		if o.prints != nil {
			opts = append(opts, rego.EnablePrintStatements(true), rego.PrintHook(print.Hook(printHook{o.prints})))
		}
		pq, err := rego.New(opts...).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: prepare %s: %w", ErrInvalidPolicy, entryPath(e), err)
		}
		st.queries[e] = prepared{query: pq, keys: ks}
		st.entries = append(st.entries, e)
	}
	problems, err := lint(ctx, c, store, o.lintTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPolicy, lintPath, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s:\n  %s", ErrInvalidPolicy, lintPath, strings.Join(problems, "\n  "))
	}
	// One read transaction for the life of the state, opened once the
	// queries are prepared: nothing ever writes to the store, and a read-only
	// inmem transaction reads without mutation, so concurrent evaluations
	// share it instead of opening one each.
	if st.txn, err = store.NewTransaction(ctx); err != nil {
		return nil, fmt.Errorf("%w: data: %w", ErrInvalidPolicy, err)
	}
	st.evalOpts = []rego.EvalOption{
		rego.EvalTransaction(st.txn), rego.EvalBaseCache(st.data), rego.EvalMetrics(metrics.NoOp()),
	}
	return st, nil
}

// lintPath is the optional rule a policy uses to report problems with its
// own configuration; a policy that reports any is not served.
const lintPath = "data.sqlgate.lint.problems"

// errLintTimeout is why a lint that took too long was cancelled.
var errLintTimeout = errors.New("the lint took longer than allowed")

// checkServedRoutes checks the route, parameter and emit subject references
// of the served modules and the data against catalog, as Check does. A route
// granted in data (a key of a `routes` object) that the catalog lacks is a
// warning, not an error: it grants nothing. The parameters within it are not
// checked (checkRoutes reports them with their route). Likewise an event
// granted in data (a key of an `events` object) that is no emit subject of
// the catalog.
func checkServedRoutes(modules map[string]*ast.Module, data map[string]any, catalog []RouteRef) (errs []error, warnings []string) {
	known, emits := map[string]bool{}, map[string]bool{}
	for _, r := range catalog {
		known[r.Subject] = true
		if r.Emit != "" {
			emits[r.Emit] = true
		}
	}
	refs := moduleRouteRefs(modules)
	for _, r := range dataRouteRefs(data) {
		if r.emit != "" && !emits[r.emit] && strings.HasSuffix(r.where, dataPath(".events", r.emit)) {
			warnings = append(warnings, fmt.Sprintf("%s: event %s is not an emit subject of the route catalog: the grant has no effect", r.where, r.emit))
			continue
		}
		if r.emit == "" && r.param == "" && !known[r.route] && strings.HasSuffix(r.where, dataPath(".routes", r.route)) {
			warnings = append(warnings, fmt.Sprintf("%s: route %s is not in the route catalog: the grant has no effect", r.where, r.route))
			continue
		}
		refs = append(refs, r)
	}
	return checkRoutes(refs, catalog), warnings
}

// joinLines joins errs one a line, indented as a continuation.
func joinLines(errs []error) error {
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = err.Error()
	}
	return errors.New(strings.Join(lines, "\n  "))
}

// lint evaluates lintPath without input and returns the problems, sorted.
// A timeout above 0 bounds it: a lint that takes longer is an error wrapping
// errLintTimeout that names the timeout. (The lint evaluates built-in
// errors as undefined, as OPA does by default and `policy test` does: the
// library's lint checks a time zone with `not time.clock(...)`.)
func lint(ctx context.Context, c *ast.Compiler, store storage.Store, timeout time.Duration) ([]string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, errLintTimeout)
		defer cancel()
	}
	rs, err := rego.New(rego.Query("problems := [p | some p in "+lintPath+"]"), rego.Compiler(c), rego.Store(store)).Eval(ctx)
	if err != nil {
		if errors.Is(context.Cause(ctx), errLintTimeout) {
			return nil, fmt.Errorf("%w: %w (%s)", errLintTimeout, err, timeout)
		}
		return nil, err
	}
	if len(rs) != 1 {
		return nil, fmt.Errorf("%d results", len(rs))
	}
	list, _ := rs[0].Bindings["problems"].([]any)
	out := make([]string, 0, len(list))
	for _, p := range list {
		if s, ok := p.(string); ok {
			out = append(out, s)
		} else {
			out = append(out, fmt.Sprint(p))
		}
	}
	slices.Sort(out)
	return out, nil
}

// dataCache serves reads of base documents (data files) straight from the
// immutable AST of the loaded data, so that evaluations neither read the store
// nor build a cache of their own. It is shared by concurrent evaluations:
// Put is a no-op.
type dataCache struct{ data ast.Object }

var _ topdown.BaseCache = dataCache{}

// Get implements topdown.BaseCache.
func (c dataCache) Get(ref ast.Ref) ast.Value {
	if len(ref) < 2 || !ref.HasPrefix(ast.DefaultRootRef) {
		return nil // all of data is read from the store, which hides data.system
	}
	v, err := c.data.Find(ref[1:])
	if err != nil {
		return nil
	}
	return v
}

// Put implements topdown.BaseCache.
func (dataCache) Put(ast.Ref, ast.Value) {}

// keepTerm makes rego hand back result terms as they are, without converting
// them to Go values.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// printHook writes the output of Rego print() calls, one line each.
type printHook struct{ w io.Writer }

var _ print.Hook = printHook{}

// Print implements print.Hook.
func (h printHook) Print(ctx print.Context, msg string) error {
	_, err := fmt.Fprintf(h.w, "%s: %s\n", location(ctx.Location), msg)
	return err
}
