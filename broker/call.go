package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/internal/header"
	"github.com/sqlgate/sqlgate/policy"
)

// Handle runs the request path for one routed call and always returns a
// reply envelope (DESIGN section 2, steps 1-8):
//
//	identify -> route -> validate -> decide -> record intent -> execute ->
//	record outcome -> reply (+ emit)
//
// Every doubt ends in a refusal: an unattested or unknown caller is
// unauthenticated, a policy error is a deny, and an intent that is not durable
// means the SQL call does not happen.
func (s *Service) Handle(ctx context.Context, req *Request) *Reply {
	start := s.now()
	if req.Received.IsZero() {
		req.Received = start
	}
	rep := &Reply{AuditIndex: -1, CorrelationID: CorrelationID(req.CorrelationID)}

	// 1 identify
	p, err := s.identify(ctx, &req.Caller, req.Received)
	if errors.Is(err, errIdentityUnavailable) {
		// Not a verdict on the caller: nothing ran, and a retry may succeed.
		s.log.ErrorContext(ctx, "caller not identified", "err", err, "subject", req.Subject, "correlation_id", rep.CorrelationID)
		return fail(rep, CodeUnavailable, "the issuance registry is unavailable; nothing was executed", nil)
	}
	if err != nil {
		s.log.WarnContext(ctx, "request refused", "reason", reasonOf(err), "subject", req.Subject,
			"correlation_id", rep.CorrelationID, "user_key", req.Caller.UserKey)
		s.recordRefusal(ctx, rep, nil, req, "unauthenticated", []string{reasonOf(err)})
		return fail(rep, CodeUnauthenticated, "caller could not be authenticated", nil)
	}

	// 2 route
	ri, ok := s.routes[req.Subject]
	if !ok {
		return fail(rep, CodeNotFound, fmt.Sprintf("no route for subject %q", req.Subject), nil)
	}
	r := ri.route

	// 3 validate
	params, err := r.Decode(req.Payload)
	if err != nil {
		var tl *route.TooLargeError
		if errors.As(err, &tl) {
			return fail(rep, CodeTooLarge, tl.Error(), nil)
		}
		return fail(rep, CodeInvalidRequest, err.Error(), nil)
	}
	if req.IdempotencyKey != "" && !header.Valid(req.IdempotencyKey, header.MaxIdempotencyKey) {
		return fail(rep, CodeInvalidRequest, "Idempotency-Key must be 1 to 256 printable ASCII characters", nil)
	}

	// 4 decide
	in := &policy.Input{
		Principal: policy.PrincipalOf(p),
		Route:     ri.policy,
		Params:    params,
		Request:   s.requestInput(rep.CorrelationID, req),
	}
	dec, err := s.cfg.Authorizer.Decide(ctx, policy.Call, in)
	if err != nil && ctx.Err() != nil {
		// The request was cancelled before the policy decided: no verdict.
		return fail(rep, CodeUnavailable, "the request was cancelled before the policy decided; nothing was executed", nil)
	}
	if err != nil || !dec.Allow {
		reasons, redact := dec.Reasons, dec.Obligations.RedactParams
		if err != nil {
			s.log.ErrorContext(ctx, "policy evaluation failed", "err", err, "subject", r.Subject, "correlation_id", rep.CorrelationID)
			if len(reasons) == 0 {
				reasons = []string{"policy evaluation failed"}
			}
			// The policy could not say which parameters are secret: keep
			// none of them, hashed or in the stored input.
			redact = slices.Collect(maps.Keys(params))
		}
		if len(reasons) == 0 {
			reasons = []string{"denied by policy"}
		}
		if errors.Is(err, policy.ErrTimeout) {
			// The policy did not decide: nothing runs, as for a deny, but
			// the caller is not refused. A busy instance decides in time
			// again; the async consumer gives the request a few attempts.
			s.recordDecision(ctx, rep, &p, req, ri, &dec, in, redact, reasons, CodeUnavailable)
			rep.TimedOut = true
			return fail(rep, CodeUnavailable, "the policy did not decide in time; nothing was executed", reasons)
		}
		s.recordDecision(ctx, rep, &p, req, ri, &dec, in, redact, reasons, CodeForbidden)
		return fail(rep, CodeForbidden, "denied by policy", reasons)
	}

	// 5 record intent (fail closed)
	hashed, _ := canonicalNumbers(params)
	canonical, err := json.Marshal(hashed)
	if err != nil {
		return fail(rep, CodeInternal, "internal error", nil)
	}
	clientKey := req.IdempotencyKey
	if clientKey == "" {
		// Without a key each call is a call of its own. The correlation id is
		// not a key: a client may give one id to every call of a saga.
		clientKey = newID()
	}
	call := &Call{
		Route: r, Params: params,
		IdempotencyKey: idempotencyKey(p.ID(), clientKey),
		RequestHash:    requestHash(r.Subject, canonical),
		CorrelationID:  rep.CorrelationID,
		Principal:      p.Display(),
		DecisionID:     dec.ID,
		MaxRows:        r.MaxRows,
	}
	if m := dec.Obligations.MaxRows; m > 0 && m < call.MaxRows {
		call.MaxRows = m
	}
	actor := actorOf(&p, &req.Caller)
	auditKey := s.cfg.Recorder.SealIdempotencyKey(call.IdempotencyKey)
	intent := &audit.Record{
		Kind: audit.KindIntent, CorrelationID: rep.CorrelationID, Actor: actor,
		DecisionID: dec.ID, Entry: string(policy.Call), PolicyRevision: dec.Revision,
		Allow: ptr(true), Reasons: dec.Reasons,
		Route: r.Subject, TargetKind: string(r.Kind), Target: r.Target,
		Params:         s.cfg.Recorder.HashParams(params, dec.Obligations.RedactParams),
		IdempotencyKey: auditKey,
		SQL:            &audit.SQL{Server: ri.db.Server, Database: ri.db.Database, Outcome: "pending"},
	}
	intentIndex, err := s.appendDecision(ctx, intent, in, dec.Obligations.RedactParams)
	if err != nil {
		s.log.ErrorContext(ctx, "audit intent not durable; call refused", "err", err, "correlation_id", rep.CorrelationID)
		return fail(rep, CodeUnavailable, "audit log unavailable; nothing was executed", nil)
	}
	rep.AuditIndex = intentIndex

	// 6 execute
	timeout := r.Timeout
	if t := dec.Obligations.Timeout; t > 0 && t < timeout {
		timeout = t
	}
	var (
		res     *Result
		execErr error
	)
	if ri.batch != nil {
		// The route lets calls that queue share a transaction (group
		// commit). The timeout bounds the call's wait in the queue and each
		// attempt to run it, separately.
		res, execErr = ri.batch.execute(ctx, call, timeout)
	} else {
		res, execErr = execute(ctx, ri.exec, call, timeout)
	}
	unknown := false // the database could not say whether a failed call committed
	if execErr != nil {
		res, unknown, execErr = s.settle(ctx, ri.exec, call, execErr)
	}
	if execErr == nil {
		res = ownCommit(res, call)
	}

	// 7 record outcome. The SQL transaction has ended either way; the
	// outcome append must finish even if the caller went away.
	outcome := &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: rep.CorrelationID, IntentIndex: intentIndex,
		Actor: actor, DecisionID: dec.ID, Route: r.Subject, TargetKind: string(r.Kind), Target: r.Target,
		IdempotencyKey: auditKey,
		SQL:            &audit.SQL{Server: ri.db.Server, Database: ri.db.Database},
		Result:         &audit.Result{},
	}
	code, msg, reasons := "", "", []string(nil)
	switch execErr {
	case nil:
		outcome.SQL.Outcome = "commit"
		if res.Replayed {
			outcome.SQL.Outcome = "none"
		}
		outcome.SQL.TransactionID = res.TransactionID
		outcome.SQL.Rows = res.Rows
		outcome.SQL.RowsAffected = res.RowsAffected
		outcome.Result.Status = "ok"
		outcome.Result.Replayed = res.Replayed
		if res.WithoutResult {
			code, msg = CodeDBError, msgWithoutResult
			outcome.Result.Status = code
		}
	default:
		code, msg, reasons = execError(execErr, call.MaxRows)
		outcome.SQL.Outcome = "rollback"
		switch {
		case code == CodeConflict:
			outcome.SQL.Outcome = "none"
		case unknown:
			// The database could not say: a retry with the same key
			// returns the stored result if it committed.
			outcome.SQL.Outcome = "unknown"
			msg = "database unavailable or timed out; whether the transaction committed is unknown (a retry with the same Idempotency-Key returns its result if it did)"
		}
		var dbe *DBError
		if errors.As(execErr, &dbe) {
			outcome.SQL.ErrorNumber = dbe.Number
		}
		outcome.Result.Status = code
		s.log.WarnContext(ctx, "call failed", "code", code, "err", execErr, "subject", r.Subject, "correlation_id", rep.CorrelationID)
	}
	outcome.Result.DurationUS = s.now().Sub(start).Microseconds()
	s.appendOutcome(ctx, outcome)

	// 8 reply (+ emit)
	if execErr != nil {
		rep.TimedOut = timedOut(execErr, unknown)
		return fail(rep, code, msg, reasons)
	}
	if res.WithoutResult {
		// Committed, but there is no result to answer or emit; the
		// transaction id tells the caller which commit it was.
		rep.SQLTransactionID = res.TransactionID
		rep.Replayed = res.Replayed
		return fail(rep, code, msg, nil)
	}
	rep.OK = true
	rep.Result = res.JSON
	rep.SQLTransactionID = res.TransactionID
	rep.Replayed = res.Replayed
	if r.Emit != "" && !res.Replayed {
		rep.Emit = &Event{
			Subject: r.Emit, Route: r.Subject, ID: eventID(dec.ID), CorrelationID: rep.CorrelationID,
			Data: emitData(r.Subject, rep, &p),
		}
	}
	return rep
}

// settle decides what an executor error means for the transaction. Most
// errors say it rolled back. An unreachable database, a timeout or an
// internal error may have come after the commit (the reply to COMMIT was
// lost), so the idempotency record, written in the same transaction, is
// looked up:
//   - a record of this call's decision: the call committed and its result
//     stands;
//   - a record of an earlier call under the same key: with the same request
//     it is a replay (this call ran nothing), with another it is a conflict;
//   - no record: it rolled back. The executor's Lookup waits for a
//     transaction still running under the key (on PostgreSQL and SQL
//     Server, where the server may still run a call whose connection was
//     lost), within the lookup's bound; past it the outcome is unknown.
//
// unknown is true when the lookup failed too.
func (s *Service) settle(ctx context.Context, exec Executor, call *Call, execErr error) (res *Result, unknown bool, err error) {
	var dbe *DBError
	var invalid *route.InvalidError
	var queued *queueError // it never reached the database
	if errors.As(execErr, &dbe) || errors.As(execErr, &invalid) || errors.As(execErr, &queued) ||
		errors.Is(execErr, ErrConflict) || errors.Is(execErr, ErrTooManyRows) {
		return nil, false, execErr
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	stored, found, lerr := lookup(lctx, exec, call.IdempotencyKey)
	switch {
	case lerr != nil:
		return nil, true, execErr
	case !found:
		return nil, false, execErr
	case stored.RequestHash != call.RequestHash:
		return nil, false, ErrConflict
	case stored.DecisionID != call.DecisionID:
		return stored, false, nil // Replayed: an earlier call's result
	}
	own := *stored
	own.Replayed = false // this call's own transaction
	return &own, false, nil
}

// lookup asks exec for the record of key until it answers or ctx ends. A
// database that dropped every pooled connection (a restart, a failover)
// fails the first attempts on connections the pool has not yet found dead,
// while it answers on a new one: without a retry the call's outcome would
// be unknown, and an unknown outcome stays in the audit log for good.
// Only an unavailable database is asked again, for at most
// [lookupRetryWindow] (a database that is down for longer would only
// delay the reply); any other error is final.
func lookup(ctx context.Context, exec Executor, key string) (*Result, bool, error) {
	wait := 20 * time.Millisecond
	until := time.Now().Add(lookupRetryWindow)
	for {
		res, found, err := exec.Lookup(ctx, key)
		if err == nil || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil || time.Now().After(until) {
			return res, found, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, err
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// lookupRetryWindow bounds how long [lookup] asks an unavailable database
// again: a pool finds its dead connections within milliseconds.
const lookupRetryWindow = time.Second

// msgWithoutResult answers a call whose routed procedure committed the
// call's transaction itself (Result.WithoutResult).
const msgWithoutResult = "the routed procedure committed the transaction itself: its changes are committed, but no result was kept and no event was emitted; routed procedures must not commit or roll back the caller's transaction"

// ownCommit returns res as this call's own commit when it is a replay of
// the record this call's decision wrote. That happens when the commit took
// place but its acknowledgement was lost and the call then ran again: a
// batch that failed after its commit, whose calls the batcher then ran
// alone. Such a call executed once, in the stored transaction: its outcome
// is a commit, it emits, and its reply is not a replay. A record of another
// decision (an earlier call under the same key) stays a replay. ([Service.settle]
// applies the same rule to the record it looks up.)
func ownCommit(res *Result, call *Call) *Result {
	if res == nil || !res.Replayed || call.DecisionID == "" || res.DecisionID != call.DecisionID {
		return res
	}
	own := *res
	own.Replayed = false
	return &own
}

// timedOut tells a slow call from a database that stopped answering: the
// statements of both run into the timeout, but only the latter's lookup
// after the failure fails as well (unknown).
func timedOut(execErr error, unknown bool) bool {
	return errors.Is(execErr, errTimedOut) && !unknown
}

// errTimedOut marks an execution error that came with the call's timeout
// expired (whatever the adapter made of the cancellation).
var errTimedOut = errors.New("the call's timeout expired")

// execute runs the call within its timeout. A panic of the executor is an
// error like any other, so the outcome of the durable intent is recorded.
// An error returned once the timeout (not the caller's context) has expired
// also wraps errTimedOut.
func execute(ctx context.Context, exec Executor, call *Call, timeout time.Duration) (res *Result, err error) {
	defer recoverAs(&err)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err = exec.Execute(tctx, call)
	if err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", errTimedOut, err)
	}
	return res, err
}

// appendOutcome records the outcome without holding the reply: the intent
// is already durable (the write-ahead record), and an outcome that is not
// made durable is written from the idempotency record in the target
// database: while the instance runs once the audit store takes writes again
// when its append failed ([audit.Log.Stranded]), at the next start after a
// crash (see the recoveries in cmd/sqlgated). Waiting would put a second
// durable commit on every request's latency. [Service.Drain] waits for
// outstanding outcome appends at shutdown.
func (s *Service) appendOutcome(ctx context.Context, outcome *audit.Record) {
	s.outcomes.Add(1)
	corr := outcome.CorrelationID
	failed := func(err error) {
		// The transaction already ended; the audit log keeps the intent for
		// recovery, which writes the missing outcome from the idempotency
		// record.
		s.log.ErrorContext(ctx, "audit outcome not durable; recovery will write it", "err", err, "correlation_id", corr)
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := s.cfg.Recorder.Enqueue(qctx, outcome, func(_ int64, err error) {
		if err != nil {
			failed(err)
		}
		s.outcomes.Done()
	})
	if err != nil {
		failed(err)
		s.outcomes.Done()
	}
}

// Drain waits until the outcome records of finished calls are appended (or
// ctx ends). Call it after the transports stopped and before closing the
// audit log.
func (s *Service) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.outcomes.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain audit outcomes: %w", ctx.Err())
	}
}

// errIdentityUnavailable: the issuance registry could not be read, so the
// caller is neither known nor unknown.
var errIdentityUnavailable = errors.New("issuance registry unavailable")

// identify resolves the caller to a principal using only attested data.
// received is when the request reached the transport; it is the time of the
// expiry check for an async request ([TransportAsync]).
func (s *Service) identify(ctx context.Context, c *Caller, received time.Time) (identity.Principal, error) {
	if !c.Attested {
		return identity.Principal{}, identity.Unauthenticated("request did not carry server-attested identity", nil)
	}
	if c.Principal != nil {
		if !c.Principal.Valid() {
			return identity.Principal{}, identity.Unauthenticated("principal without issuer or subject", nil)
		}
		return *c.Principal, nil
	}
	if s.cfg.Registry == nil {
		return identity.Principal{}, identity.Unauthenticated("no issuance registry configured", nil)
	}
	async := c.Transport == TransportAsync
	if c.Account != s.cfg.UsersAccount || (!async && !slices.Contains(s.cfg.SigningKeys, c.IssuerKey)) {
		return identity.Principal{}, identity.Unauthenticated("credential not issued by sqlgate's signing keys", nil)
	}
	iss, err := s.cfg.Registry.Get(ctx, c.UserKey)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return identity.Principal{}, identity.Unauthenticated("user key not in the issuance registry", nil)
		}
		return identity.Principal{}, fmt.Errorf("%w: %w", errIdentityUnavailable, err)
	}
	at, issuer := s.now(), c.IssuerKey
	if async {
		// The server accepted the message while the user was connected, so
		// the credential had to be valid then; its signer is the recorded one,
		// which must still be one of ours.
		at, issuer = received, iss.SigningKey
		if at.IsZero() || !slices.Contains(s.cfg.SigningKeys, issuer) {
			return identity.Principal{}, identity.Unauthenticated("credential not issued by sqlgate's signing keys", nil)
		}
	}
	switch {
	case !iss.RevokedAt.IsZero():
		return identity.Principal{}, identity.Unauthenticated("credential revoked", nil)
	case !at.Before(iss.ExpiresAt):
		return identity.Principal{}, identity.Unauthenticated("credential expired", nil)
	case iss.SigningKey != issuer:
		return identity.Principal{}, identity.Unauthenticated("credential signed by an unexpected key", nil)
	}
	return iss.Principal, nil
}

// requestInput is the request part of a call's policy input, the client
// and the reason bounded ([BoundClient], [BoundReason]) whatever the
// transport.
func (s *Service) requestInput(correlationID string, req *Request) *policy.Request {
	t := req.Received.UTC()
	return &policy.Request{
		CorrelationID: correlationID,
		Time:          t.Format(time.RFC3339Nano),
		TimeNS:        t.UnixNano(),
		Reason:        BoundReason(req.Reason),
		Transport:     req.Caller.Transport,
		Client: BoundClient(policy.Client{
			Host: req.Caller.Host, Name: req.Caller.Name, Lang: req.Caller.Lang,
			Version: req.Caller.Version, UserKey: req.Caller.UserKey, Account: req.Caller.Account,
		}),
	}
}

// appendDecision appends a record and, when configured, the decision input
// with redacted parameters removed.
func (s *Service) appendDecision(ctx context.Context, rec *audit.Record, in *policy.Input, redact []string) (int64, error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if !s.storeInputs || in == nil {
		return s.cfg.Recorder.Append(actx, rec)
	}
	stored := *in
	if len(redact) > 0 && len(in.Params) > 0 {
		stored.Params = maps.Clone(in.Params)
		for _, name := range redact {
			delete(stored.Params, name)
		}
	}
	data, err := json.Marshal(&stored)
	if err != nil {
		return 0, fmt.Errorf("encode decision input: %w", err)
	}
	return s.cfg.Recorder.AppendWithInput(actx, rec, data)
}

// recordDecision writes a `decision` record for a deny, whose result is
// status (forbidden; unavailable when the policy timed out). A failure to
// record is logged; the request is refused either way.
func (s *Service) recordDecision(ctx context.Context, rep *Reply, p *identity.Principal, req *Request, ri *routeInfo, dec *policy.Decision, in *policy.Input, redact, reasons []string, status string) {
	rec := &audit.Record{
		Kind: audit.KindDecision, CorrelationID: rep.CorrelationID, Actor: actorOf(p, &req.Caller),
		DecisionID: dec.ID, Entry: string(policy.Call), PolicyRevision: dec.Revision,
		Allow: ptr(false), Reasons: reasons, Route: ri.route.Subject,
		TargetKind: string(ri.route.Kind), Target: ri.route.Target,
		Params: s.cfg.Recorder.HashParams(in.Params, redact),
		Result: &audit.Result{Status: status},
	}
	idx, err := s.appendDecision(ctx, rec, in, redact)
	if err != nil {
		s.log.ErrorContext(ctx, "audit decision record failed", "err", err, "correlation_id", rep.CorrelationID)
		return
	}
	rep.AuditIndex = idx
}

// recordRefusal writes a `decision` record for a refusal that happened
// before policy (authentication).
func (s *Service) recordRefusal(ctx context.Context, rep *Reply, p *identity.Principal, req *Request, status string, reasons []string) {
	rec := &audit.Record{
		Kind: audit.KindDecision, CorrelationID: rep.CorrelationID, Actor: actorOf(p, &req.Caller),
		Allow: ptr(false), Reasons: reasons, Route: req.Subject,
		Result: &audit.Result{Status: status},
	}
	if idx, ok := s.recordDetached(ctx, rec, "refusal"); ok {
		rep.AuditIndex = idx
	}
}

// recordDetached appends rec even if ctx ends (a caller gone away must not
// take the record with it), within 10 s; a failure is logged, naming the
// record by what. It returns the record's index and whether it was written.
func (s *Service) recordDetached(ctx context.Context, rec *audit.Record, what string) (int64, bool) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	idx, err := s.cfg.Recorder.Append(actx, rec)
	if err != nil {
		s.log.ErrorContext(ctx, "audit record failed", "record", what, "err", err, "correlation_id", rec.CorrelationID)
		return 0, false
	}
	return idx, true
}

// execError maps an executor error to a reply code and a message that is
// safe to show the caller.
func execError(err error, maxRows int) (code, msg string, reasons []string) {
	var dbe *DBError
	var invalid *route.InvalidError
	var queued *queueError
	switch {
	case errors.As(err, &queued):
		// It waited for a batch queue and left it unexecuted.
		return CodeUnavailable, queued.msg, nil
	case errors.As(err, &invalid):
		// A value the database cannot take (e.g. out of range for its SQL
		// type): the caller's to fix; the transaction was rolled back.
		return CodeInvalidRequest, invalid.Error(), nil
	case errors.Is(err, ErrConflict):
		return CodeConflict, "Idempotency-Key was already used with a different request", nil
	case errors.Is(err, ErrTooManyRows):
		return CodeForbidden, "result exceeds the row limit", []string{fmt.Sprintf("result has more than %d rows (max_rows)", maxRows)}
	case errors.As(err, &dbe):
		return CodeDBError, dbe.Error(), nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable, "database unavailable or timed out; the transaction was rolled back", nil
	default:
		return CodeInternal, "internal error", nil
	}
}

func fail(rep *Reply, code, msg string, reasons []string) *Reply {
	rep.OK = false
	rep.Error = &ReplyError{Code: code, Message: msg, Reasons: reasons}
	return rep
}

func actorOf(p *identity.Principal, c *Caller) *audit.Actor {
	a := &audit.Actor{NATSUserKey: c.UserKey, Transport: c.Transport, ClientHost: c.Host}
	if p != nil {
		a.Issuer, a.Subject, a.ObjectID, a.Email, a.MFA = p.Issuer, p.Subject, p.ObjectID, p.Email, p.MFA
	}
	return a
}

func reasonOf(err error) string {
	var ae *identity.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return err.Error()
}

// emitData is the follow-up event: which route committed, for whom, with
// which result and audit reference.
func emitData(subject string, rep *Reply, p *identity.Principal) []byte {
	ev := struct {
		Route            string          `json:"route"`
		CorrelationID    string          `json:"correlation_id"`
		Principal        string          `json:"principal"`
		SQLTransactionID string          `json:"sql_transaction_id,omitempty"`
		AuditIndex       int64           `json:"audit_index"`
		Result           json.RawMessage `json:"result"`
	}{subject, rep.CorrelationID, p.Display(), rep.SQLTransactionID, rep.AuditIndex, rep.Result}
	data, _ := json.Marshal(ev)
	return data
}

// eventID is the id of the event of the call decided as decisionID: the
// decision id, found in the call's audit records; a new id when the
// authorizer gave none, so that no two events share one.
func eventID(decisionID string) string {
	if decisionID == "" {
		return newID()
	}
	return decisionID
}

func ptr[T any](v T) *T { return &v }
