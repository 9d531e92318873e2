package opa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
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
	// Redacted names the parameters that were removed from Input.
	Redacted []string
}

// Change is a recorded decision that the candidate policy decides the other
// way.
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
}

// Direction is "allow->deny" or "deny->allow".
func (c Change) Direction() string {
	if c.NowAllow {
		return "deny->allow"
	}
	return "allow->deny"
}

// ReplayResult summarises a replay.
type ReplayResult struct {
	// Replayed counts the decisions evaluated.
	Replayed int
	// Changes lists the decisions that would flip, in input order.
	Changes []Change
}

// Replay evaluates recorded decision inputs with the candidate engine (the
// policy under review, e.g. opened on a working copy) and lists the decisions
// that would change from allow to deny or back, so that a policy change can
// be tested against real traffic before deployment. Each input is evaluated
// at its recorded request time (input.request.time_ns) when it has one.
//
// An evaluation error of the candidate counts as a deny, as it would in
// service. An item the source fails to produce, an input that does not parse
// or one that does not match its recorded hash ends the replay with an error
// naming the decision.
func Replay(ctx context.Context, candidate *Engine, items iter.Seq2[ReplayItem, error]) (ReplayResult, error) {
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
		if d.Allow == item.Allow {
			continue
		}
		c := Change{
			Entry: item.Entry, CorrelationID: item.CorrelationID, DecisionID: item.DecisionID,
			WasAllow: item.Allow, NowAllow: d.Allow, WasRevision: item.Revision, NowRevision: d.Revision,
			Reasons: d.Reasons, Redacted: item.Redacted,
		}
		if derr != nil {
			c.Error = derr.Error()
		}
		res.Changes = append(res.Changes, c)
	}
	return res, nil
}
