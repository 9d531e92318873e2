package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/web"
)

// webLogin adapts oidc.WebLogin to web.Login.
type webLogin struct{ l *oidc.WebLogin }

func (w webLogin) Start(rw http.ResponseWriter, r *http.Request, returnTo string) error {
	return loginError(w.l.Start(rw, r, returnTo))
}

func (w webLogin) Callback(rw http.ResponseWriter, r *http.Request) (identity.Principal, string, error) {
	p, _, returnTo, err := w.l.Callback(rw, r)
	return p, returnTo, loginError(err)
}

// loginError tells the user to come back later when the dashboard refuses
// sign-ins because too many are in progress; other errors pass unchanged.
func loginError(err error) error {
	if errors.Is(err, oidc.ErrTooManyLogins) {
		return &web.HTTPError{
			Status: http.StatusServiceUnavailable, Code: broker.CodeUnavailable,
			Msg: "too many sign-ins are in progress; try again in a few minutes", Err: err,
		}
	}
	return err
}

// auditService serves the audit log to the web layer.
type auditService struct {
	log   *audit.Log
	store *sqlstore.Store
	// signer is the log's checkpoint key; it signs the manifest of the
	// evidence the dashboard writes.
	signer audit.Signer
	// previousKeys are the verifier keys of this origin's earlier signing
	// keys (audit.previousVerifierKeys).
	previousKeys []string
}

// trusted returns the verification of this instance's log against the
// keys its configuration trusts: its signing key and the previous ones it
// names, never the key history stored in the database (whoever can write
// the database can add a key there and re-sign the log). Other origins in
// the control database are not checked: no key of theirs is configured
// here; `sqlgate audit verify --key` checks them all.
func (s *auditService) trusted() audit.VerifyOptions {
	keys := append([]string{s.signer.VerifierKey()}, s.previousKeys...)
	return audit.VerifyOptions{Keys: keys, Origin: s.log.Origin()}
}

// untrustedKeys returns the keys of this instance's stored key history
// that its configuration does not trust (neither the signing key nor one of
// audit.previousVerifierKeys). The log starts without them, but the
// dashboard's verification and evidence then fail every checkpoint they
// signed: keep every earlier key in previousVerifierKeys while records it
// signed exist.
func (s *auditService) untrustedKeys(ctx context.Context) ([]string, error) {
	stored, err := s.store.Keys(ctx)
	if err != nil {
		return nil, err
	}
	trusted := map[string]bool{}
	for _, k := range s.trusted().Keys {
		trusted[strings.TrimSpace(k)] = true
	}
	var missing []string
	for _, k := range stored {
		if k.Origin == s.log.Origin() && !trusted[k.VerifierKey] {
			missing = append(missing, k.VerifierKey)
		}
	}
	return missing, nil
}

func (s *auditService) Recent(ctx context.Context, n int) ([]audit.Record, error) {
	size := s.log.Size()
	from := max(size-int64(n), 0)
	first, _, err := s.store.Bounds(ctx, s.log.Origin())
	if err != nil {
		return nil, err
	}
	from = max(from, first)
	out := make([]audit.Record, 0, size-from)
	err = s.store.Records(ctx, s.log.Origin(), from, size, func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err != nil {
			return err
		}
		out = append(out, *r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (s *auditService) Record(ctx context.Context, index int64) (*audit.Record, error) {
	data, err := s.store.Record(ctx, s.log.Origin(), index)
	if errors.Is(err, audit.ErrNotFound) {
		return nil, broker.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return audit.DecodeRecord(data)
}

func (s *auditService) Checkpoint(ctx context.Context) ([]byte, error) {
	if err := s.log.Sync(ctx); err != nil {
		return nil, err
	}
	cp, err := s.log.Latest(ctx)
	if err != nil {
		return nil, err
	}
	return cp.Note, nil
}

func (s *auditService) Verify(ctx context.Context, from, to int64) (web.VerifyReport, error) {
	if err := s.log.Sync(ctx); err != nil {
		return web.VerifyReport{}, err
	}
	opts := s.trusted()
	opts.From, opts.To = from, to
	rep, err := audit.Verify(ctx, s.store, opts)
	if err != nil {
		return web.VerifyReport{}, err
	}
	if rep.SourceFailed() {
		// The control database failed while it was read (an outage, a
		// dropped connection): nothing was found wrong with the log, and
		// the cause (hosts, users, SQL errors) is for the sqlgated log,
		// not the answer. The web layer answers 503 unavailable.
		return web.VerifyReport{}, fmt.Errorf("verify the audit log: %s", rep.FirstFailure().Message)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		return web.VerifyReport{}, err
	}
	js, err := json.Marshal(rep)
	if err != nil {
		return web.VerifyReport{}, err
	}
	return web.VerifyReport{OK: rep.OK(), Text: text.String(), JSON: js}, nil
}

func (s *auditService) Proof(ctx context.Context, index int64) (json.RawMessage, error) {
	if err := s.log.Sync(ctx); err != nil {
		return nil, err
	}
	p, err := s.log.Proof(ctx, index)
	if errors.Is(err, audit.ErrNotFound) {
		return nil, broker.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

func (s *auditService) Inputs(ctx context.Context, since time.Time, w io.Writer) error {
	enc := json.NewEncoder(w)
	return s.log.Inputs(ctx, since, func(r audit.Record, input []byte) error {
		return enc.Encode(struct {
			Record audit.Record    `json:"record"`
			Input  json.RawMessage `json:"input"`
		}{r, input})
	})
}

func (s *auditService) Export(ctx context.Context, w io.Writer, from, to int64, proofs []int64) error {
	if err := s.log.Sync(ctx); err != nil {
		return err
	}
	return audit.WriteBundle(ctx, w, s.store, audit.BundleOptions{From: from, To: to, ProofSizes: proofs})
}

// Evidence verifies this instance's log against the keys its
// configuration trusts (the signing key and audit.previousVerifierKeys,
// never keys stored in the database) and writes the SOC 2 evidence of
// [from, to), its manifest signed with the log's key, so `sqlgate audit
// check-evidence --key` shows this instance produced it. Auditors who pin
// the published key can also regenerate it offline with `sqlgate audit
// evidence --key`.
func (s *auditService) Evidence(ctx context.Context, w io.Writer, from, to time.Time) error {
	if err := s.log.Sync(ctx); err != nil {
		return err
	}
	// The evidence covers the log up to its newest signed checkpoint, which
	// an idle log signs only at its heartbeats: a period that ended since
	// would be "not covered". A heartbeat record now, and the checkpoint
	// Sync signs over it, cover it (the log is alive now; the API refuses a
	// period that ends in the future).
	if cp, err := s.log.Latest(ctx); err == nil && cp.Time.Before(to) {
		if _, err := s.log.Append(ctx, &audit.Record{Kind: audit.KindHeartbeat}); err != nil {
			return err
		}
		if err := s.log.Sync(ctx); err != nil {
			return err
		}
	}
	_, err := evidence.Write(ctx, w, s.store, evidence.Options{
		From: from, To: to, Verify: s.trusted(), Generator: "sqlgated dashboard (this instance's log, its configured keys)",
		Signer: s.signer,
	})
	if errors.Is(err, evidence.ErrNotVerified) {
		// The auditor asking is told why there is no archive: what failed
		// is what `audit verify` shows them too.
		return &web.HTTPError{Status: http.StatusInternalServerError, Code: broker.CodeInternal, Msg: "no evidence: " + err.Error()}
	}
	return err
}

// policyRoutes is the route catalog as the policy engine checks policies
// against it (opa.Config.Routes): each route's subject, parameter names and
// emit subject.
func policyRoutes(catalog *route.Catalog) []opa.RouteRef {
	routes := catalog.Routes()
	refs := make([]opa.RouteRef, 0, len(routes))
	for _, r := range routes {
		ref := opa.RouteRef{Subject: r.Subject, Params: make([]string, 0, len(r.Params)), Emit: r.Emit}
		for _, p := range r.Params {
			ref.Params = append(ref.Params, p.Name)
		}
		refs = append(refs, ref)
	}
	return refs
}

// policyService serves the engine to the web layer.
type policyService struct {
	engine *opa.Engine
	dir    string
}

func (p *policyService) Status() web.PolicyStatus {
	st := p.engine.Status()
	out := web.PolicyStatus{Revision: st.Revision, LoadedAt: st.LoadedAt, Source: p.dir}
	if st.LastError != nil {
		out.LastError = st.LastError.Error()
	}
	return out
}

// Eval decides input as the serving policy does. An input that is not a
// valid input document is not decided: the error is a 400 that names the
// field (the input is the caller's own). An evaluation error comes with the
// deny it fell back to.
func (p *policyService) Eval(ctx context.Context, entry policy.Entry, input []byte, explain bool) (policy.Decision, string, error) {
	in, err := opa.ParseInput(input)
	if err != nil {
		return policy.Decision{}, "", &web.HTTPError{Status: http.StatusBadRequest, Code: broker.CodeInvalidRequest, Msg: err.Error()}
	}
	if !explain {
		d, err := p.engine.Decide(ctx, entry, in)
		return d, "", err
	}
	var buf bytes.Buffer
	d, err := p.engine.Explain(ctx, entry, in, &buf)
	return d, buf.String(), err
}

// meteredHandler counts and times routed calls by route and result code.
type meteredHandler struct {
	next     *broker.Service
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMeteredHandler(next *broker.Service, reg *prometheus.Registry) *meteredHandler {
	m := &meteredHandler{
		next: next,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlgate_calls_total", Help: "Routed calls by route subject and result code (ok or the error code).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sqlgate_call_duration_seconds", Help: "Routed call latency inside sqlgated by route subject.",
			Buckets: callDurationBuckets,
		}, []string{"route"}),
	}
	reg.MustRegister(m.calls, m.duration)
	return m
}

// callDurationBuckets are sqlgate_call_duration_seconds' buckets: 250µs
// doubling up to 1048.576s (17.5 min), past the longest a call may run (a
// route's timeout, at most route.MaxTimeout, three of them with batch:
// longestCall). They stopped at 8.192s, and every slower call fell into
// +Inf.
var callDurationBuckets = prometheus.ExponentialBuckets(0.00025, 2, 23)

// initialCallCodes are the result codes sqlgate_calls_total exports at 0 for
// every route from the start, so that an alert on increase() or rate() sees
// the first one (a series that appears with its first event has no earlier
// sample to increase from). The other codes appear with their first call.
var initialCallCodes = []string{"ok", broker.CodeForbidden, broker.CodeDBError, broker.CodeUnavailable, broker.CodeInternal}

// initRoutes exports the counts of initialCallCodes at 0 for each subject.
func (m *meteredHandler) initRoutes(subjects []string) {
	for _, s := range subjects {
		for _, code := range initialCallCodes {
			m.calls.WithLabelValues(s, code)
		}
	}
}

func (m *meteredHandler) Handle(ctx context.Context, req *broker.Request) *broker.Reply {
	start := time.Now()
	rep := m.next.Handle(ctx, req)
	code := "ok"
	if rep.Error != nil {
		code = rep.Error.Code
	}
	subject := req.Subject
	if code == broker.CodeNotFound {
		subject = "unknown" // bound label cardinality
	}
	m.calls.WithLabelValues(subject, code).Inc()
	m.duration.WithLabelValues(subject).Observe(time.Since(start).Seconds())
	return rep
}

// auditCollector exports the audit log's counters.
type auditCollector struct{ log *audit.Log }

var (
	auditSizeDesc    = prometheus.NewDesc("sqlgate_audit_log_size", "Records in this instance's audit log.", nil, nil)
	auditBatchesDesc = prometheus.NewDesc("sqlgate_audit_batches_total", "Group commits since start.", nil, nil)
	auditErrorsDesc  = prometheus.NewDesc("sqlgate_audit_write_errors_total", "Failed audit writes since start (each refused the calls it carried).", nil, nil)
	auditCPDesc      = prometheus.NewDesc("sqlgate_audit_checkpoints_total", "Signed checkpoints since start.", nil, nil)
	auditStrandDesc  = prometheus.NewDesc("sqlgate_audit_stranded_intents",
		"Intents of this instance's calls that have no outcome in the audit log although the call ended (its outcome's append failed); recovered from the idempotency record while the instance runs.", nil, nil)
	auditDroppedDesc = prometheus.NewDesc("sqlgate_audit_stranded_dropped_total",
		"Intents without an outcome not kept for recovery while running, because 65,536 were kept already; the next start of this origin recovers them.", nil, nil)
	auditPendingDesc = prometheus.NewDesc("sqlgate_audit_pending_write_seconds",
		"How long the oldest append of the audit write in progress has waited, 0 when none is in progress; past audit.StallBound (3s) /readyz names the audit log.", nil, nil)
)

func (auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- auditSizeDesc
	ch <- auditBatchesDesc
	ch <- auditErrorsDesc
	ch <- auditCPDesc
	ch <- auditPendingDesc
	ch <- auditStrandDesc
	ch <- auditDroppedDesc
}

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.log.Stats()
	ch <- prometheus.MustNewConstMetric(auditSizeDesc, prometheus.GaugeValue, float64(c.log.Size()))
	ch <- prometheus.MustNewConstMetric(auditBatchesDesc, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(auditErrorsDesc, prometheus.CounterValue, float64(st.WriteErrors))
	ch <- prometheus.MustNewConstMetric(auditCPDesc, prometheus.CounterValue, float64(st.Checkpoints))
	ch <- prometheus.MustNewConstMetric(auditPendingDesc, prometheus.GaugeValue, c.log.PendingWriteAge().Seconds())
	ch <- prometheus.MustNewConstMetric(auditStrandDesc, prometheus.GaugeValue, float64(st.Stranded))
	ch <- prometheus.MustNewConstMetric(auditDroppedDesc, prometheus.CounterValue, float64(st.StrandedDropped))
}

// recoveredNotRun is the status of a recovered outcome whose call ran
// nothing: its idempotency key holds another call's record (a replay or a
// conflict; the reply it got is not known).
const recoveredNotRun = "not_run"

// recoveryLookupTimeout bounds each idempotency lookup of crash recovery;
// a lookup that cannot answer in time fails the start (nothing is recorded
// from a guess), and the next start tries again.
const recoveryLookupTimeout = 30 * time.Second

// recoverIntents writes the outcomes a crash left missing: for every intent
// without an outcome it asks the target database whether the idempotency
// record committed, and whether by this intent's call (its decision id) or
// by an earlier one. The intents of a database still pending (unreachable
// at start) are left for it to recover once it opens (lazyDB). An intent
// whose idempotency key is sealed under a parameter key this instance does
// not hold fails it before any outcome is written, naming the key id: its
// outcome would otherwise be recorded unknown for good.
func recoverIntents(ctx context.Context, log *audit.Log, executors map[string]broker.Executor, logger interface {
	InfoContext(context.Context, string, ...any)
},
) error {
	return recoverIntentsWhere(ctx, log, executors, logger, deferPending)
}

// recoverIntentsWhere is recoverIntents for the intents pick keeps, given
// each intent and the executor it ran on (nil: its database is not
// configured); pick returns the executor to look the intent up on (nil: the
// outcome is unknown).
func recoverIntentsWhere(ctx context.Context, log *audit.Log, executors map[string]broker.Executor, logger interface {
	InfoContext(context.Context, string, ...any)
}, pick func(in *audit.Record, ex broker.Executor) (broker.Executor, bool),
) error {
	intents, err := log.Unpaired(ctx)
	if err != nil {
		return fmt.Errorf("find unpaired audit intents: %w", err)
	}
	return recoverRecords(ctx, log, intents, executors, logger, pick)
}

// recoverRecords is recoverIntentsWhere for the given intents.
func recoverRecords(ctx context.Context, log *audit.Log, intents []audit.Record, executors map[string]broker.Executor, logger interface {
	InfoContext(context.Context, string, ...any)
}, pick func(in *audit.Record, ex broker.Executor) (broker.Executor, bool),
) error {
	// An intent whose key is sealed under a parameter key this instance
	// does not hold cannot be looked up; recording its outcome as unknown
	// would be final although configuring the key answers it: the start
	// fails first, before any outcome is written.
	type job struct {
		in   audit.Record
		ex   broker.Executor
		key  string
		kerr error
	}
	var jobs []job
	var missing []string
	for _, in := range intents {
		ex, keep := pick(&in, executorFor(executors, in.SQL))
		if !keep {
			continue
		}
		// The record holds the key sealed under the parameter key (plain in
		// records of earlier versions).
		key, kerr := log.OpenIdempotencyKey(in.IdempotencyKey)
		if ex != nil && errors.Is(kerr, audit.ErrUnknownParamKey) {
			if id := sealedKeyID(in.IdempotencyKey); !slices.Contains(missing, id) {
				missing = append(missing, id)
			}
			continue
		}
		jobs = append(jobs, job{in: in, ex: ex, key: key, kerr: kerr})
	}
	if len(missing) > 0 {
		return fmt.Errorf("audit intents without an outcome have their idempotency key sealed under parameter key id %s, which this instance does not hold: "+
			"add the file of each to audit.previousParamKeyFiles, so that crash recovery can ask the target database whether those calls committed (nothing was recorded)",
			strings.Join(missing, ", "))
	}
	for _, j := range jobs {
		in, ex, key, kerr := j.in, j.ex, j.key, j.kerr
		out := &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: in.CorrelationID, IntentIndex: in.Index, Actor: in.Actor,
			DecisionID: in.DecisionID, Route: in.Route, TargetKind: in.TargetKind, Target: in.Target,
			IdempotencyKey: in.IdempotencyKey, Result: &audit.Result{Recovered: true},
			SQL: &audit.SQL{Outcome: "rollback"},
		}
		if in.SQL != nil {
			out.SQL.Server, out.SQL.Database = in.SQL.Server, in.SQL.Database
		}
		if kerr != nil && ex != nil {
			logger.InfoContext(ctx, "audit intent's idempotency key cannot be opened (malformed, or sealed by another parameter key of its id than the one configured); its outcome is unknown", "intent_index", in.Index, "err", kerr)
		}
		switch {
		case ex == nil || kerr != nil:
			out.Result.Status = broker.CodeInternal
			out.SQL.Outcome = "unknown"
		default:
			// A lookup waits for a call still running under the key (the
			// key's lock): bound it, so that a start cannot hang on it.
			lctx, cancel := context.WithTimeout(ctx, recoveryLookupTimeout)
			res, found, err := ex.Lookup(lctx, key)
			cancel()
			if err != nil {
				return fmt.Errorf("recover intent %d: look up idempotency record: %w", in.Index, err)
			}
			switch {
			case found && res.DecisionID == in.DecisionID:
				out.SQL.Outcome, out.SQL.TransactionID = "commit", res.TransactionID
				out.SQL.Rows, out.SQL.RowsAffected = res.Rows, res.RowsAffected
				out.Result.Status = "ok"
				if res.WithoutResult {
					// Committed by the routed procedure itself, without a
					// result: the call answered (or would have) db_error.
					out.Result.Status = broker.CodeDBError
				}
			case found:
				// The key holds another call's record: this call was a
				// replay of it or a conflict with it (the intent does not
				// say which) and ran nothing; the transaction is the
				// other call's, whose outcome records it.
				out.SQL.Outcome = "none"
				out.Result.Status = recoveredNotRun
			default:
				out.Result.Status = broker.CodeUnavailable
			}
		}
		if _, err := log.Append(ctx, out); err != nil {
			return fmt.Errorf("recover intent %d: %w", in.Index, err)
		}
		logger.InfoContext(ctx, "recovered missing audit outcome", "intent_index", in.Index, "outcome", out.SQL.Outcome, "correlation_id", in.CorrelationID)
	}
	return nil
}

// strandedInterval is how often a running instance looks for the intents
// of its own calls that have no outcome (audit.Log.Stranded: the outcome's
// append failed, or an intent was stored although its call was refused);
// after a pass that failed it waits twice as long, up to strandedBackoffLast.
const (
	strandedInterval    = 5 * time.Second
	strandedBackoffLast = time.Minute
)

// recoverStranded writes, while the instance runs, the outcomes its calls
// could not append (audit.Log.Stranded) as the start's recovery does for a
// crash: looked up in the idempotency record, marked recovered. Intents
// before boundary (the log's size when the instance started taking calls)
// are left to the recovery of the earlier runs' intents (at start, or of a
// database pending at start once it opens). Each target database's intents
// are recovered apart, so that one database that cannot be asked holds back
// no other; a pending database's wait until it opens. It returns the errors
// of the databases whose intents are still stranded (they are tried again at
// the next pass).
func recoverStranded(ctx context.Context, log *audit.Log, executors map[string]broker.Executor, boundary int64, logger interface {
	InfoContext(context.Context, string, ...any)
},
) error {
	intents, err := log.Stranded(ctx)
	if err != nil {
		return fmt.Errorf("find stranded audit intents: %w", err)
	}
	type target struct{ server, database string }
	groups := map[target][]audit.Record{}
	var order []target
	for _, in := range intents {
		if in.Index < boundary {
			continue
		}
		var k target
		if in.SQL != nil {
			k = target{in.SQL.Server, in.SQL.Database}
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], in)
	}
	var errs []error
	for _, k := range order {
		if err := recoverRecords(ctx, log, groups[k], executors, logger, deferPending); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sealedKeyID returns the parameter key id a sealed idempotency key
// ("sealed:<id>:<hex>") names.
func sealedKeyID(v string) string {
	rest, _ := strings.CutPrefix(v, "sealed:")
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// pruneMetrics count pruned idempotency records and failed prunes by
// database.
type pruneMetrics struct{ pruned, errors *prometheus.CounterVec }

func newPruneMetrics(reg prometheus.Registerer) pruneMetrics {
	m := pruneMetrics{
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlgate_idempotency_pruned_total", Help: "Idempotency records deleted after their retention, by database.",
		}, []string{"database"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlgate_idempotency_prune_errors_total", Help: "Failed or skipped prunes of idempotency records, by database.",
		}, []string{"database"}),
	}
	reg.MustRegister(m.pruned, m.errors)
	return m
}

// init exports both counts of the databases pruneIdempotency prunes at 0,
// so that an alert on their increase sees the first failed prune.
func (m pruneMetrics) init(executors map[string]broker.Executor, retention map[string]time.Duration) {
	for name := range executors {
		if _, _, ok := pruneJob(executors, retention, name); ok {
			m.pruned.WithLabelValues(name)
			m.errors.WithLabelValues(name)
		}
	}
}

// pruneJob returns how pruneIdempotency prunes the database name: its
// pruner and retention; ok is false when it does not (no pruner, or a
// retention of 0: records kept forever; a name without retention gets the
// default).
func pruneJob(executors map[string]broker.Executor, retention map[string]time.Duration, name string) (p broker.Pruner, keep time.Duration, ok bool) {
	p, isPruner := executors[name].(broker.Pruner)
	keep, set := retention[name]
	if !set {
		keep = defaultIdempotencyRetention
	}
	return p, keep, isPruner && keep > 0
}

// pruneIdempotency deletes the idempotency records each database keeps no
// longer (retention by database name; 0 keeps them, a missing name gets the
// default). It never deletes a record committed at or after the oldest
// intent still without an outcome: recovery at the next start asks that
// record whether the intent's call committed. When the intents cannot be
// read it prunes nothing.
func pruneIdempotency(ctx context.Context, log *audit.Log, executors map[string]broker.Executor, retention map[string]time.Duration, now time.Time, logger *slog.Logger, m pruneMetrics) {
	type job struct {
		name string
		p    broker.Pruner
		cut  time.Time
	}
	var jobs []job
	for _, name := range slices.Sorted(maps.Keys(executors)) {
		if p, keep, ok := pruneJob(executors, retention, name); ok {
			jobs = append(jobs, job{name, p, now.Add(-keep)})
		}
	}
	if len(jobs) == 0 {
		return
	}
	intents, err := log.Unpaired(ctx)
	if err != nil {
		logger.WarnContext(ctx, "prune idempotency records skipped", "err", err)
		for _, j := range jobs {
			m.errors.WithLabelValues(j.name).Inc()
		}
		return
	}
	for _, j := range jobs {
		for _, in := range intents {
			if in.Time.Before(j.cut) {
				j.cut = in.Time
			}
		}
		n, err := j.p.Prune(ctx, j.cut)
		m.pruned.WithLabelValues(j.name).Add(float64(n))
		switch {
		case err != nil:
			m.errors.WithLabelValues(j.name).Inc()
			logger.WarnContext(ctx, "prune idempotency records failed", "database", j.name, "err", err)
		case n > 0:
			logger.InfoContext(ctx, "pruned idempotency records", "database", j.name, "count", n, "committed_before", j.cut)
		}
	}
}

// executorFor finds the executor an intent ran on.
func executorFor(executors map[string]broker.Executor, sql *audit.SQL) broker.Executor {
	if sql == nil {
		return nil
	}
	for _, ex := range executors {
		d := ex.Describe()
		if d.Database == sql.Database && d.Server == sql.Server {
			return ex
		}
	}
	return nil
}

// webSessions keeps the dashboard's sessions in the control database, shared
// by every instance.
type webSessions struct{ st *control.SessionStore }

func (w webSessions) PutSession(ctx context.Context, s web.Session, now time.Time) error {
	return w.st.Put(ctx, control.WebSession(s), now)
}

func (w webSessions) Session(ctx context.Context, key string) (web.Session, bool, error) {
	s, found, err := w.st.Get(ctx, key)
	return web.Session(s), found, err
}

func (w webSessions) DeleteSession(ctx context.Context, key string) error {
	return w.st.Delete(ctx, key)
}

func (w webSessions) DeletePrincipalSessions(ctx context.Context, principalID string) (int64, error) {
	return w.st.DeletePrincipal(ctx, principalID)
}

// routeChecker is an executor that can tell, before any call, whether a
// route can run on it (the target exists, sqlgate may execute it).
type routeChecker interface {
	Check(ctx context.Context, r *route.Route) error
}

// checkRoutes checks every route against its database at start and logs
// each one that cannot run, naming the route and the reason: a missing
// procedure or a missing permission shows now, not at the first call. A
// failed check does not stop the start: the database may be migrated after
// sqlgated is deployed, and a call that cannot run fails closed anyway. It
// returns how many routes failed.
func checkRoutes(ctx context.Context, catalog *route.Catalog, executors map[string]broker.Executor, log *slog.Logger) int {
	failed := 0
	for _, r := range catalog.Routes() {
		c, ok := executors[r.Database].(routeChecker)
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Check(cctx, r)
		cancel()
		if err != nil {
			failed++
			level := slog.LevelError
			if errors.Is(err, broker.ErrUnavailable) {
				level = slog.LevelWarn // the database is not there yet; calls will say so
			}
			log.Log(ctx, level, "route cannot run on its database", "subject", r.Subject, "database", r.Database, "target", r.Target, "err", err)
		}
	}
	return failed
}
