package opa

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sqlgate/sqlgate/policy"
)

// ErrInvalidInput marks an input document that is not valid JSON, does not
// match [InputSchema] or does not decode into [policy.Input].
var ErrInvalidInput = fmt.Errorf("invalid input document")

// inputSchema is InputSchema compiled for validation.
var inputSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(InputSchema))
	if err != nil {
		return nil, err
	}
	// Registered under its $id: a file name would be resolved against the
	// working directory, and validation errors, which API clients see, would
	// name it (file:///srv/sqlgate/input.schema.json#).
	c := jsonschema.NewCompiler()
	if err := c.AddResource(inputSchemaID, doc); err != nil {
		return nil, err
	}
	return c.Compile(inputSchemaID)
})

// inputSchemaID is the $id of [InputSchema].
const inputSchemaID = "urn:sqlgate:policy:input:v1"

// ParseInput decodes an input document: JSON matching [InputSchema], numbers
// kept exact (json.Number). Errors wrap [ErrInvalidInput] and name the field.
func ParseInput(data []byte) (*policy.Input, error) {
	schema, err := inputSchema()
	if err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if err := schema.Validate(doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var in policy.Input
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	return &in, nil
}

// Eval decides one input with the policy in dir and prints the decision to w,
// as `sqlgate policy eval` does. input is the JSON form of [policy.Input]
// (validated against [InputSchema]). With explain, it also prints which rules
// produced a value, the expressions of the entry package that failed, and the
// notes (trace()) and print() output of the evaluation.
//
// The returned decision is the one printed; an evaluation failure is
// reported as by [Engine.Decide] (a deny and an error wrapping
// [policy.ErrEvaluation]). A policy that does not load is an error wrapping
// [ErrInvalidPolicy]; an input that does not parse one wrapping
// [ErrInvalidInput].
func Eval(ctx context.Context, dir string, entry policy.Entry, input []byte, explain bool, w io.Writer) (policy.Decision, error) {
	in, err := ParseInput(input)
	if err != nil {
		return policy.Decision{}, err
	}
	fsys, err := dirFS(dir)
	if err != nil {
		return policy.Decision{}, err
	}
	var prints bytes.Buffer
	// The lint bound of an engine with the default EvalTimeout: a policy
	// whose lint takes longer does not load there.
	st, err := build(ctx, fsys, buildOptions{now: time.Now, prints: &prints, lintTimeout: MinLintTimeout})
	if err != nil {
		return policy.Decision{}, err
	}
	e := &Engine{cfg: Config{EvalTimeout: 10 * time.Second, Now: time.Now}, log: slog.New(slog.DiscardHandler)}
	e.cur.Store(st)
	var d policy.Decision
	var derr error
	if explain {
		d, derr = e.Explain(ctx, entry, in, w)
	} else {
		d, derr = e.Decide(ctx, entry, in)
		if err := writeDecision(w, entry, d, derr); err != nil {
			return d, err
		}
	}
	if prints.Len() > 0 {
		fmt.Fprintf(w, "print output:\n%s", indent(prints.String()))
	}
	return d, derr
}

// Explain decides like [Engine.Decide] and writes the decision to w, followed
// by which rules produced a value (and the value), the expressions of the
// entry package that failed, and the notes of the policy's trace() calls. It
// traces the evaluation, which is much slower than Decide: it is meant for
// people (the web policy page, `sqlgate policy eval --explain`), not for the
// request path.
func (e *Engine) Explain(ctx context.Context, entry policy.Entry, in *policy.Input, w io.Writer) (policy.Decision, error) {
	tracer := &explainTracer{entry: entryPath(entry)}
	if st := e.cur.Load(); st != nil {
		tracer.files = st.files[entry]
	}
	d, derr := e.decide(ctx, entry, in, e.cfg.Now(), tracer)
	if err := writeDecision(w, entry, d, derr); err != nil {
		return d, err
	}
	tracer.write(w)
	return d, derr
}

// writeDecision prints a decision as Eval and Explain show it.
func writeDecision(w io.Writer, entry policy.Entry, d policy.Decision, derr error) error {
	out, err := json.MarshalIndent(decisionView(d), "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "decision of %s (policy revision %s):\n%s\n", entryPath(entry), d.Revision, out)
	if derr != nil {
		fmt.Fprintf(w, "evaluation error: %v\n", derr)
	}
	return nil
}

// DecisionView is the JSON form of a decision that people and scripts read
// (`sqlgate policy eval`, replay reports): obligations in the units a policy
// writes them, timeout_ms in milliseconds and ttl in seconds.
type DecisionView struct {
	ID           string   `json:"decision_id,omitempty"`
	Allow        bool     `json:"allow"`
	Reasons      []string `json:"reasons,omitempty"`
	Revision     string   `json:"policy_revision,omitempty"`
	MaxRows      int      `json:"max_rows,omitempty"`
	TimeoutMS    int64    `json:"timeout_ms,omitempty"`
	RedactParams []string `json:"redact_params,omitempty"`
	TTL          float64  `json:"ttl,omitempty"`
	Pub          []string `json:"pub,omitempty"`
	Sub          []string `json:"sub,omitempty"`
}

func decisionView(d policy.Decision) DecisionView {
	return DecisionView{
		ID: d.ID, Allow: d.Allow, Reasons: d.Reasons, Revision: d.Revision,
		MaxRows: d.Obligations.MaxRows, TimeoutMS: d.Obligations.Timeout.Milliseconds(),
		RedactParams: d.Obligations.RedactParams, TTL: d.Obligations.TTL.Seconds(),
		Pub: d.Obligations.Pub, Sub: d.Obligations.Sub,
	}
}

// explainTracer condenses an evaluation trace: the rules that produced a
// value (with the value), the failed expressions of the entry package, and
// notes. It plugs values while the evaluation runs, when bindings are valid.
type explainTracer struct {
	entry ast.Ref
	files []string // the modules of the entry package
	fired []string
	fails []string
	notes []string
	seen  map[string]bool
}

var _ topdown.QueryTracer = (*explainTracer)(nil)

// maxShown bounds how much of a value the explanation prints.
const maxShown = 120

func (t *explainTracer) Enabled() bool               { return true }
func (t *explainTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }

// TraceEvent implements topdown.QueryTracer.
func (t *explainTracer) TraceEvent(evt topdown.Event) {
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	add := func(list *[]string, line string) {
		if !t.seen[line] {
			t.seen[line] = true
			*list = append(*list, line)
		}
	}
	switch evt.Op {
	case topdown.ExitOp:
		r, ok := evt.Node.(*ast.Rule)
		if !ok {
			return
		}
		head := r.Ref().String()
		if len(r.Head.Args) > 0 {
			head += "(" + shorten(evt.Plug(ast.ArrayTerm(r.Head.Args...)).String()) + ")"
		}
		value := r.Head.Value
		if r.Head.Key != nil && r.Head.Value == nil {
			value = r.Head.Key
			head += " contains"
		} else {
			head += " ="
		}
		add(&t.fired, fmt.Sprintf("%-32s %s %s", location(r.Loc()), head, shorten(evt.Plug(value).String())))
	case topdown.FailOp:
		e, ok := evt.Node.(*ast.Expr)
		if !ok || e.Generated || evt.Location == nil {
			return
		}
		if !t.inEntry(evt) {
			return
		}
		text := e.String()
		if len(evt.Location.Text) > 0 {
			text = string(evt.Location.Text) // as written, not as compiled
		}
		add(&t.fails, fmt.Sprintf("%-32s %s", location(evt.Location), shorten(text)))
	case topdown.NoteOp:
		add(&t.notes, fmt.Sprintf("%-32s %s", location(evt.Location), evt.Message))
	}
}

// inEntry reports whether an event comes from a module of the entry package.
func (t *explainTracer) inEntry(evt topdown.Event) bool {
	return slices.Contains(t.files, evt.Location.File)
}

func (t *explainTracer) write(w io.Writer) {
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	section("rules that produced a value", t.fired)
	section("failed expressions in "+t.entry.String(), t.fails)
	section("notes", t.notes)
}

func shorten(s string) string {
	if len(s) > maxShown {
		return s[:maxShown-3] + "..."
	}
	return s
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ") + "\n"
}
