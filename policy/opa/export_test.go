package opa

import (
	"context"

	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/sqlgate/sqlgate/policy"
)

// DecideCountingSteps is Decide with the evaluation steps counted by the
// policy file they are in, for tests that bound the work a policy does
// rather than the time it takes.
func (e *Engine) DecideCountingSteps(ctx context.Context, entry policy.Entry, in *policy.Input) (policy.Decision, map[string]int, error) {
	c := stepCounter{}
	d, err := e.decide(ctx, entry, in, e.cfg.Now(), c)
	return d, c, err
}

// stepCounter counts the evaluation events of each file.
type stepCounter map[string]int

func (stepCounter) Enabled() bool               { return true }
func (stepCounter) Config() topdown.TraceConfig { return topdown.TraceConfig{} }

func (c stepCounter) TraceEvent(evt topdown.Event) {
	if evt.Op == topdown.EvalOp && evt.Location != nil {
		c[evt.Location.File]++
	}
}

// SubjectMatches is the engine's deny_pub matching.
var SubjectMatches = subjectMatches
