package opa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/sqlgate/sqlgate/policy"
)

// ReplayItem is one recorded decision to evaluate again, as the audit log
// keeps it.
type ReplayItem struct {
	Entry         policy.Entry
	CorrelationID string
	DecisionID    string
	// Allow and Revision are what was decided, and by which policy revision.
	Allow    bool
	Revision string
	// Input is the stored decision input: the JSON form of [policy.Input]
	// with the parameters named by the decision's redact_params removed.
	Input []byte
	// InputSHA256 is the hex SHA-256 of Input that the audit record holds;
	// when set, an Input that does not match it is refused.
	InputSHA256 string
	// Redacted names the parameters that were removed from Input: the
	// recorded decision's redact_params among the call's parameters.
	Redacted []string
	// Obligations are the recorded decision's obligations, nil when the
	// source does not hold them (the audit record does not): they are then
	// taken from [ReplayOptions].Baseline, if set.
	Obligations *policy.Obligations
}

// ReplayOptions are the options of [Replay].
type ReplayOptions struct {
	// Baseline, if set, is the policy the recorded decisions were made with
	// (the serving policy, e.g. the deployed branch of the policy
	// repository). The obligations of an item without recorded Obligations
	// are those of the baseline's decision of the same input at the same
	// time; without a baseline only the redaction, which the record
	// holds, is compared.
	Baseline *Engine
}

// ObligationChange is an obligation the candidate sets differently.
type ObligationChange struct {
	// Key is the obligation as policies write it: redact_params, max_rows,
	// timeout_ms, ttl, pub or sub.
	Key string
	// Was and Now are the recorded (or baseline) and the candidate's values in
	// policy units: a number (max_rows, timeout_ms in milliseconds, ttl in
	// seconds; 0 when absent) or a sorted list of strings. For redact_params
	// both are limited to the call's parameters: what was, and would be, kept
	// out of the audit record.
	Was, Now any
}

// Change is a recorded decision that the candidate policy decides the other
// way, or with other obligations.
type Change struct {
	Entry         policy.Entry
	CorrelationID string
	DecisionID    string
	// WasAllow is the recorded decision, NowAllow the candidate's.
	WasAllow, NowAllow bool
	// WasRevision and NowRevision are the deciding policy revisions.
	WasRevision, NowRevision string
	// Reasons are the candidate's reasons.
	Reasons []string
	// Error is the candidate's evaluation error (a deny), if any.
	Error string
	// Redacted names parameters the candidate could not see: a change that
	// depends on them may be an artefact of the redaction.
	Redacted []string
	// Obligations lists the obligations the candidate sets differently, in
	// the order redact_params, max_rows, timeout_ms, ttl, pub, sub.
	Obligations []ObligationChange
}

// Direction is "allow->deny" or "deny->allow", or "obligations" when only
// obligations change.
func (c Change) Direction() string {
	switch {
	case c.WasAllow == c.NowAllow:
		return "obligations"
	case c.NowAllow:
		return "deny->allow"
	}
	return "allow->deny"
}

// ReplayResult summarises a replay.
type ReplayResult struct {
	// Replayed counts the decisions evaluated.
	Replayed int
	// Changes lists the decisions that would flip or carry other
	// obligations, in input order.
	Changes []Change
}

// Replay evaluates recorded decision inputs with the candidate engine (the
// policy under review, e.g. opened on a working copy) and lists the decisions
// that would change from allow to deny or back, or whose obligations would
// change, so that a policy change can be tested against real traffic before
// deployment. Each input is evaluated at its recorded request time
// (input.request.time_ns) when it has one.
//
// Obligations are compared with the item's Obligations, else with the
// baseline's decision (see [ReplayOptions]); the redaction is always compared
// with the record: a recorded parameter the candidate would no longer redact,
// or one it would now redact, is a change. A candidate that fails to evaluate
// decides a deny that redacts every parameter of the call, as in service
// (the policy could not say which are secret); its other obligations are not
// compared, since nothing would run. A baseline that fails leaves the other
// obligations of that item uncompared.
//
// An item the source fails to produce, an input that does not parse or one
// that does not match its recorded hash ends the replay with an error naming
// the decision.
func Replay(ctx context.Context, candidate *Engine, items iter.Seq2[ReplayItem, error], opts ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	for item, err := range items {
		if err != nil {
			return res, fmt.Errorf("replay: read recorded decision: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if item.InputSHA256 != "" {
			sum := sha256.Sum256(item.Input)
			if hex.EncodeToString(sum[:]) != item.InputSHA256 {
				return res, fmt.Errorf("replay decision %s: stored input does not match the audit record's input_sha256", item.DecisionID)
			}
		}
		in, err := ParseInput(item.Input)
		if err != nil {
			return res, fmt.Errorf("replay decision %s: %w", item.DecisionID, err)
		}
		at := candidate.cfg.Now()
		if in.Request != nil && in.Request.TimeNS > 0 {
			at = time.Unix(0, in.Request.TimeNS)
		}
		d, derr := candidate.decide(ctx, item.Entry, in, at, nil)
		res.Replayed++
		was := item.Obligations
		if was == nil && opts.Baseline != nil {
			if b, err := opts.Baseline.decide(ctx, item.Entry, in, at, nil); err == nil {
				was = &b.Obligations
			}
		}
		now := d.Obligations
		if derr != nil {
			// As the broker does: the policy could not say which parameters
			// are secret, so none is kept; a deny runs nothing, so the other
			// obligations do not apply.
			now, was = policy.Obligations{RedactParams: slices.Collect(maps.Keys(in.Params))}, nil
			now.RedactParams = append(now.RedactParams, item.Redacted...)
		}
		obligations := compareObligations(in, item.Redacted, was, now)
		if d.Allow == item.Allow && len(obligations) == 0 {
			continue
		}
		c := Change{
			Entry: item.Entry, CorrelationID: item.CorrelationID, DecisionID: item.DecisionID,
			WasAllow: item.Allow, NowAllow: d.Allow, WasRevision: item.Revision, NowRevision: d.Revision,
			Reasons: d.Reasons, Redacted: item.Redacted, Obligations: obligations,
		}
		if derr != nil {
			c.Error = derr.Error()
		}
		res.Changes = append(res.Changes, c)
	}
	return res, nil
}

// compareObligations lists the obligations now sets differently from was (nil:
// unknown, only the redaction is compared). The redaction is compared over
// the call's parameters, the stored ones and the redacted ones: redacted is
// what the record kept out.
func compareObligations(in *policy.Input, redacted []string, was *policy.Obligations, now policy.Obligations) []ObligationChange {
	var out []ObligationChange
	params := map[string]bool{}
	for _, name := range redacted {
		params[name] = true
	}
	for name := range in.Params {
		params[name] = true
	}
	if len(params) > 0 {
		wasRedacted := sorted(redacted)
		var nowRedacted []string
		for _, name := range slices.Sorted(maps.Keys(params)) {
			if slices.Contains(now.RedactParams, name) {
				nowRedacted = append(nowRedacted, name)
			}
		}
		if nowRedacted == nil {
			nowRedacted = []string{}
		}
		if !slices.Equal(wasRedacted, nowRedacted) {
			out = append(out, ObligationChange{Key: "redact_params", Was: wasRedacted, Now: nowRedacted})
		}
	}
	if was == nil {
		return out
	}
	numbers := []struct {
		key      string
		was, now int64
	}{
		{"max_rows", int64(was.MaxRows), int64(now.MaxRows)},
		{"timeout_ms", was.Timeout.Milliseconds(), now.Timeout.Milliseconds()},
		{"ttl", int64(was.TTL / time.Second), int64(now.TTL / time.Second)},
	}
	for _, n := range numbers {
		if n.was != n.now {
			out = append(out, ObligationChange{Key: n.key, Was: n.was, Now: n.now})
		}
	}
	for _, l := range []struct {
		key      string
		was, now []string
	}{
		{"pub", was.Pub, now.Pub},
		{"sub", was.Sub, now.Sub},
	} {
		if w, n := sorted(l.was), sorted(l.now); !slices.Equal(w, n) {
			out = append(out, ObligationChange{Key: l.key, Was: w, Now: n})
		}
	}
	return out
}

// sorted returns a sorted copy of list, never nil (so that it prints as []).
func sorted(list []string) []string {
	out := append([]string{}, list...)
	slices.Sort(out)
	return slices.Compact(out)
}
