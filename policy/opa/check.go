package opa

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/types"
	"go.yaml.in/yaml/v3"

	"github.com/sqlgate/sqlgate/policy"
)

// RouteRef is a route of the route catalog as [Check] sees it: its subject,
// the names of its parameters and its emit subject ("" for none). (policy/opa
// does not depend on the broker's catalog; the CLI converts.)
type RouteRef struct {
	Subject string
	Params  []string
	Emit    string
}

// RoutesFromCatalog reads the route subjects, parameter names (the
// properties of each route's params schema) and emit subjects from a route
// catalog file (routes.yaml, the format of broker/route) for [Check], without
// depending on the broker. Other keys are ignored: the broker validates
// catalogs.
func RoutesFromCatalog(data []byte) ([]RouteRef, error) {
	var catalog struct {
		Routes []struct {
			Subject string `yaml:"subject"`
			Emit    string `yaml:"emit"`
			Params  struct {
				Properties map[string]any `yaml:"properties"`
			} `yaml:"params"`
		} `yaml:"routes"`
	}
	if err := yaml.Unmarshal(data, &catalog); err != nil {
		return nil, fmt.Errorf("route catalog: %w", err)
	}
	if len(catalog.Routes) == 0 {
		return nil, errors.New("route catalog: no routes")
	}
	refs := make([]RouteRef, 0, len(catalog.Routes))
	for i, r := range catalog.Routes {
		if r.Subject == "" {
			return nil, fmt.Errorf("route catalog: routes[%d]: no subject", i)
		}
		refs = append(refs, RouteRef{Subject: r.Subject, Params: slices.Sorted(maps.Keys(r.Params.Properties)), Emit: r.Emit})
	}
	return refs, nil
}

// Check checks the policy directory dir as `sqlgate policy check` does and
// returns every problem found (nil when there is none):
//
//   - every file parses as Rego v1, JSON or YAML, and the modules compile
//     with the engine's capabilities, with the tests and without them (as
//     the engine serves them: a served module may not call a function of a
//     test module);
//   - the modules type-check against [InputSchema] (a misspelt
//     input.principal.gruops is an error), as the engine's do;
//   - the decision contract holds (see [DecisionKeys]) and
//     data.sqlgate.lint.problems, if the policy defines it, is empty and
//     evaluates within [MinLintTimeout], as the engine needs;
//   - with a non-empty catalog, the policy defines data.sqlgate.call (a
//     misspelt package would deny every call);
//   - with a non-nil catalog, every route subject and parameter the policy
//     refers to exists in it: string literals compared with
//     input.route.subject (==, !=, in), references input.params.NAME (tied to
//     the route compared in the same rule, if there is exactly one), and in
//     data: the elements or keys of any `routes` member, any `route` member,
//     and, for such a route, `param` members and `*params` lists within it;
//     every constant string of data.sqlgate.nats.pub (pub contains "x",
//     pub := {"x"}) is a route subject (not a wildcard); every constant
//     string of data.sqlgate.nats.deny_pub matches a route subject; and
//     every emit subject it refers to is one of the catalog's: constant
//     strings of data.sqlgate.nats.sub (sub contains "x", sub := {"x"}) and
//     the elements or keys of any `events` member in data.
func Check(ctx context.Context, dir string, catalog []RouteRef) []error {
	fsys, err := dirFS(dir)
	if err != nil {
		return []error{err}
	}
	snap, err := readSnapshot(fsys, true)
	if err != nil {
		return []error{err}
	}
	p, err := snap.parse()
	if err != nil {
		var lerrs loader.Errors
		if errors.As(err, &lerrs) {
			return slices.Clone([]error(lerrs))
		}
		return []error{err}
	}
	served := map[string]*ast.Module{}
	for name, m := range p.modules {
		if !isTestFile(name) {
			served[name] = m
		}
	}
	refs := moduleRouteRefs(served)
	refs = append(refs, dataRouteRefs(p.data)...)

	// The modules with their tests, as `policy test` runs them, ...
	all, err := newCompiler(p.data, true)
	if err != nil {
		return []error{err}
	}
	if all.Compile(p.modules); all.Failed() {
		return compileErrors(all.Errors, "")
	}
	// ... and without them, as the engine serves them: a served module
	// that calls a function of a test module compiles only with the tests.
	c, err := newCompiler(p.data, false)
	if err != nil {
		return []error{err}
	}
	if c.Compile(served); c.Failed() {
		return compileErrors(c.Errors, " (without the *_test.rego modules, as the policy is served)")
	}

	_, errs := checkContract(served, p.data)
	errs = append(errs, checkDecisionValues(served, c.TypeEnv)...)
	// The engine's bound for the lint, as it is at the least: a lint that
	// takes longer is refused there.
	problems, err := lint(ctx, c, inmem.NewFromObject(p.data), MinLintTimeout)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", lintPath, err))
	}
	for _, msg := range problems {
		errs = append(errs, fmt.Errorf("%s: %s", lintPath, msg))
	}
	if catalog != nil {
		errs = append(errs, checkRoutes(refs, catalog)...)
	}
	if len(catalog) > 0 {
		errs = append(errs, checkDecidesCalls(served)...)
	}
	return errs
}

// checkDecidesCalls reports a policy that does not define data.sqlgate.call,
// so that every call of a catalog's routes would be denied: a misspelt
// package (sqlgate.calls) loads, since another entry or none is enough.
func checkDecidesCalls(modules map[string]*ast.Module) []error {
	ep := entryPath(policy.Call)
	var others []string // other packages with an allow rule: misspelt entries?
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		m := modules[name]
		if m.Package.Path.Equal(ep) {
			return nil
		}
		if slices.ContainsFunc(policy.Entries, func(e policy.Entry) bool { return m.Package.Path.Equal(entryPath(e)) }) {
			continue
		}
		if slices.ContainsFunc(m.Rules, func(r *ast.Rule) bool {
			ref := r.Head.Ref()
			return len(ref) == 1 && ref[0].Value.String() == "allow"
		}) {
			others = append(others, fmt.Sprintf("%s has package %s", name, m.Package.Path))
		}
	}
	err := fmt.Errorf("the policy defines no %s (package sqlgate.call), so every call of the route catalog's routes would be denied (%q)",
		ep, fmt.Sprintf("the policy does not decide %s", policy.Call))
	if len(others) > 0 {
		err = fmt.Errorf("%w; is a package misspelt? %s", err, strings.Join(others, ", "))
	}
	return []error{err}
}

// compileErrors returns the compiler's errors, each followed by note.
func compileErrors(cerrs ast.Errors, note string) []error {
	errs := make([]error, len(cerrs))
	for i, e := range cerrs {
		if note == "" {
			errs[i] = e
		} else {
			errs[i] = fmt.Errorf("%w%s", e, note)
		}
	}
	return errs
}

// checkDecisionValues reports decision keys whose value the engine would
// refuse (denying the decision as malformed): a constant value is checked as
// each decision is (allow := "true", max_rows := -5, pub contains 42), and
// any other value by the type the type checker infers for the key, when
// no value of that type can do (redact_params := concat(",", ...), a
// string). What the checker does not know (input.params.n) passes.
func checkDecisionValues(modules map[string]*ast.Module, env *ast.TypeEnv) []error {
	var errs []error
	for _, e := range policy.Entries {
		ep := entryPath(e)
		first := map[string]*ast.Location{} // where each key is first defined
		bad := map[string]bool{}            // keys with a refused constant
		for _, name := range slices.Sorted(maps.Keys(modules)) {
			m := modules[name]
			if !m.Package.Path.Equal(ep) {
				continue
			}
			for _, r := range m.Rules {
				ref := r.Head.Ref()
				key := ref[0].Value.String()
				if !slices.Contains(DecisionKeys[e], key) || len(ref) > 1 || len(r.Head.Args) > 0 {
					continue // a helper, or refused by checkContract
				}
				if first[key] == nil {
					first[key] = r.Location
				}
				for ; r != nil; r = r.Else {
					var v *ast.Term
					switch {
					case r.Head.Value != nil:
						v = r.Head.Value
					case r.Head.Key != nil:
						v = ast.SetTerm(r.Head.Key) // key contains x
						v.Location = r.Head.Key.Location
					default:
						continue
					}
					if !ast.IsConstant(v.Value) {
						continue
					}
					if err := checkValue(key, v.Value); err != nil {
						loc := v.Location
						if loc == nil {
							loc = r.Location
						}
						errs = append(errs, fmt.Errorf("%s: %w (%s.%s): every decision it applies to would be denied as malformed", location(loc), err, ep, key))
						bad[key] = true
					}
				}
			}
		}
		for _, key := range slices.Sorted(maps.Keys(first)) {
			if bad[key] || env == nil {
				continue
			}
			tpe := env.GetByRef(ep.Append(ast.StringTerm(key)))
			if want, ok := decisionTypeMismatch(key, tpe); ok {
				errs = append(errs, fmt.Errorf("%s: %s.%s is %s, not %s: every decision would be denied as malformed", location(first[key]), ep, key, types.Sprint(tpe), want))
			}
		}
	}
	return errs
}

// decisionTypeMismatch reports whether no value of type tpe is a valid value
// of the decision key, and what is wanted. Unknown (any) types pass.
func decisionTypeMismatch(key string, tpe types.Type) (string, bool) {
	var want string
	var fits func(types.Type) bool
	switch key {
	case "allow":
		want, fits = "a boolean", func(t types.Type) bool { _, ok := t.(types.Boolean); return ok }
	case "max_rows", "timeout_ms":
		want, fits = "a number", func(t types.Type) bool { _, ok := t.(types.Number); return ok }
	case "ttl":
		want, fits = "a number of seconds or a duration string", func(t types.Type) bool {
			switch t.(type) {
			case types.Number, types.String:
				return true
			}
			return false
		}
	case "deny", "deny_pub":
		want, fits = "a set of strings", func(t types.Type) bool {
			s, ok := t.(*types.Set)
			return ok && mayBe(s.Of(), isString)
		}
	case "reasons", "redact_params", "pub", "sub":
		want, fits = "a set or array of strings", func(t types.Type) bool {
			switch t := t.(type) {
			case *types.Set:
				return mayBe(t.Of(), isString)
			case *types.Array:
				for i := range t.Len() {
					if !mayBe(t.Select(i), isString) {
						return false
					}
				}
				return t.Dynamic() == nil || mayBe(t.Dynamic(), isString)
			}
			return false
		}
	default:
		return "", false
	}
	return want, tpe != nil && !mayBe(tpe, fits)
}

// mayBe reports whether a value of type t may satisfy fits: t is unknown
// (any), fits, or is a union one of whose members may.
func mayBe(t types.Type, fits func(types.Type) bool) bool {
	if u, ok := t.(types.Any); ok {
		if len(u) == 0 {
			return true
		}
		return slices.ContainsFunc(u, func(m types.Type) bool { return mayBe(m, fits) })
	}
	return fits(t)
}

func isString(t types.Type) bool { _, ok := t.(types.String); return ok }

// routeRef is one reference of a policy to a route, a route's parameter or
// an emit subject.
type routeRef struct {
	where string // file:row, or the data path
	route string // "" for a parameter not tied to a route
	param string // "" for a reference to the route itself
	emit  string // an emit subject (route and param are "")
	pub   bool   // route is a constant of data.sqlgate.nats.pub
	// denyPub: route is a constant of data.sqlgate.nats.deny_pub, a
	// subject pattern that must match a route subject.
	denyPub bool
}

var (
	routeSubjectRef = ast.MustParseRef("input.route.subject")
	paramsRef       = ast.MustParseRef("input.params")
)

// moduleRouteRefs finds the route subjects and parameters that rules refer to
// with literals, the route subjects data.sqlgate.nats.pub names with
// constants, and the emit subjects data.sqlgate.nats.sub names with
// constants.
func moduleRouteRefs(modules map[string]*ast.Module) []routeRef {
	var refs []routeRef
	natsPath := entryPath(policy.NATS)
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		if modules[name].Package.Path.Equal(natsPath) {
			refs = append(refs, natsRefs(modules[name])...)
		}
		for _, rule := range modules[name].Rules {
			var routes []routeRef
			var ties []string // routes the rule is about (== and in, not !=)
			ast.WalkExprs(rule, func(e *ast.Expr) bool {
				if !e.IsCall() || len(e.Operands()) != 2 {
					return false
				}
				a, b := e.Operand(0), e.Operand(1)
				switch e.Operator().String() {
				case "eq", "equal", "neq":
					if isRouteSubject(b) {
						a, b = b, a
					}
					if s, ok := b.Value.(ast.String); ok && isRouteSubject(a) {
						routes = append(routes, routeRef{where: location(e.Location), route: string(s)})
						if e.Operator().String() != "neq" {
							ties = append(ties, string(s))
						}
					}
				case "internal.member_2":
					if isRouteSubject(a) {
						for _, s := range literalStrings(b) {
							routes = append(routes, routeRef{where: location(e.Location), route: s})
							ties = append(ties, s)
						}
					}
				}
				return false
			})
			tied := ""
			if len(ties) == 1 {
				tied = ties[0]
			}
			refs = append(refs, routes...)
			ast.WalkRefs(rule, func(r ast.Ref) bool {
				if len(r) > 2 && r.HasPrefix(paramsRef) {
					if s, ok := r[2].Value.(ast.String); ok {
						refs = append(refs, routeRef{where: location(r[0].Location), route: tied, param: string(s)})
					}
				}
				return false
			})
		}
	}
	return refs
}

// natsRefs returns the constant subjects the rules of m, the package of
// data.sqlgate.nats, add to pub (route subjects), deny_pub (patterns of route
// subjects) and sub (emit subjects): `pub contains "x"`, `sub contains "x"`
// and `sub := {"x"}` (or a list), else branches included. A computed subject
// is not checked.
func natsRefs(m *ast.Module) []routeRef {
	var refs []routeRef
	for _, r := range m.Rules {
		ref := r.Head.Ref()
		if len(ref) != 1 || len(r.Head.Args) > 0 {
			continue
		}
		key := ref[0].Value.String()
		if key != "sub" && key != "pub" && key != "deny_pub" {
			continue
		}
		for ; r != nil; r = r.Else {
			var terms []*ast.Term
			switch {
			case r.Head.Key != nil:
				terms = []*ast.Term{r.Head.Key}
			case r.Head.Value != nil:
				switch v := r.Head.Value.Value.(type) {
				case *ast.Array:
					v.Foreach(func(t *ast.Term) { terms = append(terms, t) })
				case ast.Set:
					v.Foreach(func(t *ast.Term) { terms = append(terms, t) })
				}
			}
			for _, t := range terms {
				if s, ok := t.Value.(ast.String); ok {
					loc := t.Location
					if loc == nil {
						loc = r.Location
					}
					switch key {
					case "pub":
						refs = append(refs, routeRef{where: location(loc), route: string(s), pub: true})
					case "deny_pub":
						refs = append(refs, routeRef{where: location(loc), route: string(s), denyPub: true})
					default:
						refs = append(refs, routeRef{where: location(loc), emit: string(s)})
					}
				}
			}
		}
	}
	return refs
}

func isRouteSubject(t *ast.Term) bool {
	r, ok := t.Value.(ast.Ref)
	return ok && r.Equal(routeSubjectRef)
}

// literalStrings returns the strings of an array or set literal.
func literalStrings(t *ast.Term) []string {
	var out []string
	add := func(e *ast.Term) {
		if s, ok := e.Value.(ast.String); ok {
			out = append(out, string(s))
		}
	}
	switch v := t.Value.(type) {
	case *ast.Array:
		v.Foreach(add)
	case ast.Set:
		v.Foreach(add)
	}
	return out
}

// dataRouteRefs finds route and parameter references in the data document by
// the naming convention Check documents.
func dataRouteRefs(data map[string]any) []routeRef {
	var refs []routeRef
	walkData("data", data, "", &refs)
	return refs
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func dataPath(path, key string) string {
	if identifier.MatchString(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func walkData(path string, v any, route string, refs *[]routeRef) {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			walkData(fmt.Sprintf("%s[%d]", path, i), e, route, refs)
		}
	case map[string]any:
		if r, ok := x["route"].(string); ok {
			*refs = append(*refs, routeRef{where: dataPath(path, "route"), route: r})
			route = r
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			p := dataPath(path, k)
			switch val := x[k].(type) {
			case string:
				if k == "param" && route != "" {
					*refs = append(*refs, routeRef{where: p, route: route, param: val})
				}
				continue
			case []any:
				if k == "events" {
					for i, e := range val {
						if s, ok := e.(string); ok {
							*refs = append(*refs, routeRef{where: fmt.Sprintf("%s[%d]", p, i), emit: s})
						}
					}
					continue
				}
				if k == "routes" {
					for i, e := range val {
						if s, ok := e.(string); ok {
							*refs = append(*refs, routeRef{where: fmt.Sprintf("%s[%d]", p, i), route: s})
						}
					}
					continue
				}
				if strings.HasSuffix(k, "params") && route != "" {
					for i, e := range val {
						if s, ok := e.(string); ok {
							*refs = append(*refs, routeRef{where: fmt.Sprintf("%s[%d]", p, i), route: route, param: s})
						}
					}
					continue
				}
			case map[string]any:
				if k == "events" {
					for _, subject := range slices.Sorted(maps.Keys(val)) {
						ep := dataPath(p, subject)
						*refs = append(*refs, routeRef{where: ep, emit: subject})
						walkData(ep, val[subject], route, refs)
					}
					continue
				}
				if k == "routes" {
					for _, subject := range slices.Sorted(maps.Keys(val)) {
						rp := dataPath(p, subject)
						*refs = append(*refs, routeRef{where: rp, route: subject})
						walkData(rp, val[subject], subject, refs)
					}
					continue
				}
			}
			walkData(p, x[k], route, refs)
		}
	}
}

// checkRoutes reports the references that the catalog does not have.
func checkRoutes(refs []routeRef, catalog []RouteRef) []error {
	params := map[string][]string{}
	emits := map[string]bool{}
	for _, r := range catalog {
		params[r.Subject] = r.Params
		if r.Emit != "" {
			emits[r.Emit] = true
		}
	}
	var errs []error
	for _, r := range refs {
		if r.denyPub {
			if !slices.ContainsFunc(catalog, func(c RouteRef) bool { return subjectMatches(r.route, c.Subject) }) {
				errs = append(errs, fmt.Errorf("%s: %q matches no route subject of the route catalog: deny_pub would refuse nothing", r.where, r.route))
			}
			continue
		}
		if r.emit != "" {
			if !emits[r.emit] {
				errs = append(errs, fmt.Errorf("%s: %s is not an emit subject of the route catalog (%s)", r.where, r.emit, emitsText(emits)))
			}
			continue
		}
		switch ps, known := params[r.route]; {
		case r.pub && !known:
			errs = append(errs, fmt.Errorf("%s: %q is not a route subject of the route catalog: pub holds route subjects, and the broker drops any other (a wildcard included)", r.where, r.route))
		case r.route != "" && !known && r.param != "":
			// The route's own reference reports it.
		case r.route != "" && !known:
			errs = append(errs, fmt.Errorf("%s: route %s is not in the route catalog", r.where, r.route))
		case r.route != "" && r.param != "" && !slices.Contains(ps, r.param):
			errs = append(errs, fmt.Errorf("%s: %s is not a parameter of %s (its parameters: %s)",
				r.where, r.param, r.route, strings.Join(ps, ", ")))
		case r.route == "" && !anyHas(params, r.param):
			errs = append(errs, fmt.Errorf("%s: no route in the catalog has a parameter %s", r.where, r.param))
		}
	}
	return errs
}

// emitsText lists the catalog's emit subjects for messages.
func emitsText(emits map[string]bool) string {
	if len(emits) == 0 {
		return "it has none"
	}
	return "its emit subjects: " + strings.Join(slices.Sorted(maps.Keys(emits)), ", ")
}

func anyHas(params map[string][]string, p string) bool {
	for _, ps := range params {
		if slices.Contains(ps, p) {
			return true
		}
	}
	return false
}
