package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/sqlgate/sqlgate/internal/yamlstrict"
)

// Config is the YAML form of a catalog file.
type Config struct {
	Routes []Spec `yaml:"routes" json:"routes"`
}

// Spec is the YAML form of one route. Keys are camelCase; unknown keys
// are an error.
type Spec struct {
	Subject     string            `yaml:"subject" json:"subject"`
	Description string            `yaml:"description" json:"description,omitempty"`
	Procedure   string            `yaml:"procedure" json:"procedure,omitempty"`
	Statement   *StatementSpec    `yaml:"statement" json:"statement,omitempty"`
	Database    string            `yaml:"database" json:"database"`
	Mode        string            `yaml:"mode" json:"mode,omitempty"`
	Batch       int               `yaml:"batch" json:"batch,omitempty"`
	Timeout     string            `yaml:"timeout" json:"timeout,omitempty"`
	MaxPayload  int               `yaml:"maxPayload" json:"maxPayload,omitempty"`
	MaxRows     int               `yaml:"maxRows" json:"maxRows,omitempty"`
	Emit        string            `yaml:"emit" json:"emit,omitempty"`
	Tags        []string          `yaml:"tags" json:"tags,omitempty"`
	Params      map[string]any    `yaml:"params" json:"params"`
	SQLTypes    map[string]string `yaml:"sqlTypes" json:"sqlTypes,omitempty"`
	Output      map[string]string `yaml:"output" json:"output,omitempty"`
}

// StatementSpec is an admin-defined statement with `:name` placeholders.
type StatementSpec struct {
	Name string `yaml:"name" json:"name"`
	SQL  string `yaml:"sql" json:"sql"`
}

// Catalog is a validated, immutable set of routes keyed by subject.
type Catalog struct {
	routes   map[string]*Route
	subjects []string
}

// Lookup returns the route for subject.
func (c *Catalog) Lookup(subject string) (*Route, bool) {
	r, ok := c.routes[subject]
	return r, ok
}

// Routes returns every route sorted by subject.
func (c *Catalog) Routes() []*Route {
	out := make([]*Route, 0, len(c.subjects))
	for _, s := range c.subjects {
		out = append(out, c.routes[s])
	}
	return out
}

// Subjects returns every route subject, sorted.
func (c *Catalog) Subjects() []string { return slices.Clone(c.subjects) }

// Databases returns the distinct databases the routes use, sorted.
func (c *Catalog) Databases() []string {
	var out []string
	for _, r := range c.routes {
		if !slices.Contains(out, r.Database) {
			out = append(out, r.Database)
		}
	}
	sort.Strings(out)
	return out
}

// LoadFile reads and validates a catalog file.
func LoadFile(path string) (*Catalog, error) {
	c, err := CheckFile(path)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CheckFile is LoadFile for a check that goes on beyond the catalog: with
// the error it returns the routes that are valid on their own (nil when the
// file does not parse), so that what refers to them (a configuration's
// databases) can be checked too. A catalog returned with an error must not
// be served.
func CheckFile(path string) (*Catalog, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the catalog path comes from the operator's configuration
	if err != nil {
		return nil, fmt.Errorf("read route catalog: %w", err)
	}
	c, errs := parse(data)
	if len(errs) > 0 {
		return c, fmt.Errorf("route catalog %s: %w", path, errors.Join(errs...))
	}
	return c, nil
}

// Parse decodes a YAML catalog (unknown keys rejected) and validates it,
// reporting every problem at once.
func Parse(data []byte) (*Catalog, error) {
	c, errs := parse(data)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// parse decodes and validates a catalog: it returns the routes that are
// valid on their own (nil when data does not parse) and every problem.
// yaml reports a key the catalog does not define and a value of the wrong
// type, and decodes the rest: a route with an unknown key is checked
// as well (the key is all yaml left out), one with a value of the wrong
// type is not (the value is missing), but takes part in the checks across
// routes that its subject and emit allow.
func parse(data []byte) (*Catalog, []error) {
	var cfg Config
	err := yamlstrict.Decode(data, &cfg, nil)
	if err == nil {
		return newCatalog(cfg.Routes, nil)
	}
	errs := []error{fmt.Errorf("decode: %w", err)}
	undecoded, ok := undecodedRoutes(data, err, len(cfg.Routes))
	if !ok {
		return nil, errs
	}
	c, more := newCatalog(cfg.Routes, undecoded)
	return c, append(errs, more...)
}

// decodeProblem is a line of a yamlstrict error that yaml decoded the
// rest of the document after (a key the catalog does not define,
// unknownKeyProblem, or a value of the wrong type), and names its line.
var (
	decodeProblem     = regexp.MustCompile(`^line (\d+): `)
	unknownKeyProblem = regexp.MustCompile(`^line \d+: unknown key `)
)

// undecodedRoutes returns which of the n decoded routes a yamlstrict error
// left incomplete (a value of the wrong type on one of the route's lines),
// and false when the error is not one yaml decodes the rest of the
// document after (a syntax error).
func undecodedRoutes(data []byte, derr error, n int) (map[int]bool, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, false
	}
	spans := routeSpans(&doc)
	if len(spans) != n {
		return nil, false
	}
	undecoded := map[int]bool{}
	for _, msg := range strings.Split(derr.Error(), "\n") {
		m := decodeProblem.FindStringSubmatch(msg)
		if m == nil {
			return nil, false
		}
		if unknownKeyProblem.MatchString(msg) {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		for i, sp := range spans {
			if line >= sp[0] && line <= sp[1] {
				undecoded[i] = true
			}
		}
	}
	return undecoded, true
}

// routeSpans returns, for each element of the document's routes sequence,
// its first and last line.
func routeSpans(doc *yaml.Node) [][2]int {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "routes" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var spans [][2]int
		for _, item := range m.Content[i+1].Content {
			spans = append(spans, [2]int{item.Line, lastLine(item)})
		}
		return spans
	}
	return nil
}

func lastLine(n *yaml.Node) int {
	last := n.Line
	for _, c := range n.Content {
		last = max(last, lastLine(c))
	}
	return last
}

// New validates route configurations and builds a catalog. The error joins
// one entry per problem, each naming the route.
func New(cfgs []Spec) (*Catalog, error) {
	c, errs := newCatalog(cfgs, nil)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// newCatalog builds the catalog of the routes of cfgs that are valid on
// their own and returns every problem. The routes in undecoded are not
// checked on their own (decoding left values out), but their subjects and
// emits are checked against the other routes'.
func newCatalog(cfgs []Spec, undecoded map[int]bool) (*Catalog, []error) {
	c := &Catalog{routes: make(map[string]*Route, len(cfgs))}
	var errs []error
	first := map[string]int{} // subject -> position of the first route with it
	for i, rc := range cfgs {
		name := routeName(rc, i)
		var r *Route
		if !undecoded[i] {
			var rerrs []error
			r, rerrs = build(rc)
			for _, e := range rerrs {
				errs = append(errs, fmt.Errorf("route %s: %w", name, e))
			}
		}
		// Whatever else is wrong with either route: a subject is one route's.
		if j, dup := first[rc.Subject]; dup {
			errs = append(errs, fmt.Errorf("route %s: duplicate subject (routes #%d and #%d)", name, j+1, i+1))
			continue
		}
		if rc.Subject != "" {
			first[rc.Subject] = i
		}
		if r != nil {
			c.routes[r.Subject] = r
			c.subjects = append(c.subjects, r.Subject)
		}
	}
	for i, rc := range cfgs {
		if j, clash := first[rc.Emit]; clash && rc.Emit != "" && rc.Emit != rc.Subject {
			errs = append(errs, emitClash(rc, i, j))
			if first[rc.Subject] == i {
				delete(c.routes, rc.Subject)
			}
		}
	}
	c.subjects = slices.DeleteFunc(c.subjects, func(s string) bool { return c.routes[s] == nil })
	sort.Strings(c.subjects)
	return c, errs
}

// emitClash refuses the emit of route rc (at position i), which is the
// subject of the route at position j (a route's own is refused by build):
// an event there would be a call to that route, and sqlgated may not
// publish on a route subject, so serve, dev and nats-setup would refuse
// the catalog when they build the NATS accounts. The reserved subjects
// (sqlgate.>, with the async and reply subjects) are no valid emit
// (ValidSubject).
func emitClash(rc Spec, i, j int) error {
	return fmt.Errorf("route %s: emit %q is the subject of route %s (#%d): an event there would be a call to that route; choose another emit subject", routeName(rc, i), rc.Emit, rc.Emit, j+1)
}

// routeName names the route of cfg at position i in errors: its subject,
// or #n (counted from 1) when it has none.
func routeName(rc Spec, i int) string {
	if rc.Subject == "" {
		return fmt.Sprintf("#%d", i+1)
	}
	return rc.Subject
}

func build(rc Spec) (*Route, []error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	r := &Route{
		Subject: rc.Subject, Description: rc.Description, Database: rc.Database,
		Emit: rc.Emit, Tags: slices.Clone(rc.Tags), MaxPayload: rc.MaxPayload, MaxRows: rc.MaxRows,
	}
	if r.Tags == nil {
		r.Tags = []string{}
	}
	if !ValidSubject(rc.Subject) {
		bad("subject %q must be a concrete NATS subject (tokens of letters, digits, '_' or '-'; no wildcards; not $..., _INBOX... or sqlgate...)", rc.Subject)
	}
	switch {
	case rc.Procedure != "" && rc.Statement != nil:
		bad("set either procedure or statement, not both")
	case rc.Procedure != "":
		r.Kind, r.Target = Procedure, rc.Procedure
		if !ValidProcedureName(rc.Procedure) {
			bad("procedure %q must be up to three dot-separated plain identifiers", rc.Procedure)
		}
	case rc.Statement != nil:
		r.Kind, r.Target = StatementKind, rc.Statement.Name
		if !ValidIdentifier(rc.Statement.Name) {
			bad("statement name %q must be a plain identifier", rc.Statement.Name)
		}
		st, err := ParseStatement(rc.Statement.Name, rc.Statement.SQL)
		if err != nil {
			bad("statement: %v", err)
		} else {
			r.Statement = st
		}
	default:
		bad("a target is required: procedure or statement")
	}
	if !ValidIdentifier(rc.Database) {
		bad("database %q must be a plain identifier naming a configured database", rc.Database)
	}
	switch rc.Mode {
	case "", string(Sync):
		r.Mode = Sync
	case string(Async):
		r.Mode = Async
	default:
		bad("mode %q must be sync or async", rc.Mode)
	}
	r.Batch = 1
	switch {
	case rc.Batch == 0:
	case rc.Batch < 1 || rc.Batch > MaxBatch:
		bad("batch %d must be from 1 to %d", rc.Batch, MaxBatch)
	default:
		r.Batch = rc.Batch
	}
	r.Timeout = DefaultTimeout
	if rc.Timeout != "" {
		d, err := time.ParseDuration(rc.Timeout)
		switch {
		case err != nil:
			bad("timeout %q: %v", rc.Timeout, err)
		case d <= 0 || d > MaxTimeout:
			bad("timeout %s must be > 0 and <= %s", d, MaxTimeout)
		default:
			r.Timeout = d
		}
	}
	switch {
	case r.MaxPayload == 0:
		r.MaxPayload = DefaultMaxPayload
	case r.MaxPayload < 2 || r.MaxPayload > MaxMaxPayload:
		bad("maxPayload %d must be between 2 and %d bytes", r.MaxPayload, MaxMaxPayload)
	}
	switch {
	case r.MaxRows == 0:
		r.MaxRows = DefaultMaxRows
	case r.MaxRows < 0:
		bad("maxRows %d must be positive", r.MaxRows)
	}
	if rc.Emit != "" && !ValidSubject(rc.Emit) {
		bad("emit %q must be a concrete NATS subject", rc.Emit)
	}
	if rc.Emit != "" && rc.Emit == rc.Subject {
		bad("emit must differ from the route subject")
	}
	for _, t := range rc.Tags {
		if t == "" || len(t) > 64 {
			bad("tag %q must be 1 to 64 characters", t)
		}
	}

	errs = append(errs, r.buildParams(rc)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// buildParams compiles the parameter schema and derives the declared
// parameters from its properties.
func (r *Route) buildParams(rc Spec) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	schema := maps.Clone(rc.Params) // the caller's map stays as it was
	if schema == nil {
		schema = map[string]any{"type": "object"}
	}
	if t, _ := schema["type"].(string); t != "object" {
		bad("params must be a JSON Schema with type: object")
		return errs
	}
	errs = append(errs, checkKeywords("params", "params", schema, topKeywords)...)
	switch schema["additionalProperties"].(type) {
	case nil:
		schema["additionalProperties"] = false // closed unless the route says otherwise
	case bool:
	default:
		bad("params: additionalProperties must be true or false")
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		bad("params: %v", err)
		return errs
	}
	r.SchemaJSON = raw
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		bad("params: %v", err)
		return errs
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	const loc = "sqlgate:///params.json"
	if err := comp.AddResource(loc, doc); err != nil {
		bad("params: %v", err)
		return errs
	}
	sch, err := comp.Compile(loc)
	if err != nil {
		bad("params schema: %v", err)
		return errs
	}
	r.schema = sch

	required := map[string]bool{}
	if req, ok := schema["required"].([]any); ok {
		for _, n := range req {
			if s, ok := n.(string); ok {
				required[s] = true
			}
		}
	}
	props, _ := schema["properties"].(map[string]any)
	r.byName = make(map[string]*Param, len(props))
	for _, name := range slices.Sorted(maps.Keys(props)) { // errors in a stable order
		v := props[name]
		if !ValidIdentifier(name) {
			bad("parameter %q must be a plain identifier", name)
			continue
		}
		ps, _ := v.(map[string]any)
		p := Param{Name: name, Required: required[name]}
		p.Format, _ = ps["format"].(string)
		switch t := ps["type"].(type) {
		case string:
			p.Type = t
		case []any:
			for _, x := range t {
				switch s, _ := x.(string); s {
				case "null":
					p.Nullable = true
				default:
					if p.Type != "" {
						bad("parameter %q: at most one non-null type", name)
					}
					p.Type = s
				}
			}
		}
		switch p.Type {
		case "string", "integer", "number", "boolean":
			errs = append(errs, checkKeywords(fmt.Sprintf("parameter %q", name), "a parameter of type "+p.Type, ps, paramKeywords[p.Type])...)
			if _, set := ps["format"]; set && p.Type == "string" && !slices.Contains(Formats, p.Format) {
				bad("parameter %q: format %v is not one sqlgate checks%s; formats: %s", name, ps["format"], suggest(p.Format, Formats), strings.Join(Formats, ", "))
			}
		default:
			bad("parameter %q: type must be string, integer, number or boolean (optionally with null), got %v", name, ps["type"])
		}
		r.Params = append(r.Params, p)
	}
	for name := range required {
		if _, ok := props[name]; !ok {
			bad("required parameter %q is not declared in properties", name)
		}
	}
	sort.Slice(r.Params, func(i, j int) bool { return r.Params[i].Name < r.Params[j].Name })
	for i := range r.Params {
		r.byName[r.Params[i].Name] = &r.Params[i]
	}

	for name, t := range rc.SQLTypes {
		p, ok := r.byName[name]
		if !ok {
			bad("sqlTypes: %q is not a declared parameter", name)
			continue
		}
		if err := CheckSQLType(t); err != nil {
			bad("sqlTypes: %q: %v", name, err)
			continue
		}
		p.SQLType = strings.TrimSpace(t)
	}
	if len(rc.Output) > 0 && r.Kind != Procedure {
		bad("output parameters need a procedure target")
	}
	for name, t := range rc.Output {
		if !ValidIdentifier(name) {
			bad("output %q must be a plain identifier", name)
			continue
		}
		if _, clash := r.byName[name]; clash {
			bad("output %q clashes with an input parameter", name)
			continue
		}
		if err := CheckSQLType(t); err != nil {
			bad("output %q: %v", name, err)
			continue
		}
		r.Outputs = append(r.Outputs, Param{Name: name, SQLType: strings.TrimSpace(t)})
	}
	sort.Slice(r.Outputs, func(i, j int) bool { return r.Outputs[i].Name < r.Outputs[j].Name })
	errs = append(errs, portableNames(r.Params, r.Outputs)...)
	// The prefix is reserved in any case: SQL Server compares variable
	// names case-insensitively under the usual collations, so
	// Sqlgate_Principal would clash with the batch's @sqlgate_principal.
	for _, p := range r.Params {
		if reserved(p.Name) {
			bad("parameter %q: the %s prefix (in any case) is reserved for session values and the adapters' own names", p.Name, SessionPrefix)
		}
	}
	for _, o := range r.Outputs {
		if reserved(o.Name) {
			bad("output %q: the %s prefix (in any case) is reserved for session values and the adapters' own names", o.Name, SessionPrefix)
		}
	}
	if r.Statement != nil {
		for _, n := range r.Statement.Names() {
			if reserved(n) {
				if !slices.Contains(SessionNames, n) {
					bad("statement uses :%s; session placeholders are %s", n, strings.Join(SessionNames, ", "))
				}
				continue
			}
			if _, ok := r.byName[n]; !ok {
				bad("statement uses :%s which is not a declared parameter", n)
			}
		}
	}
	return errs
}

// Formats are the values of `format` a string parameter may declare: the
// formats the validator asserts (santhosh-tekuri/jsonschema v6 with
// AssertFormat). It ignores any other format, so one it does not know
// (datetime, idn-email) would bound nothing, and the catalog refuses it.
var Formats = []string{
	"date", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "iri", "iri-reference", "json-pointer",
	"period", "regex", "relative-json-pointer", "semver", "time", "uri", "uri-reference", "uri-template", "uuid",
}

// The JSON Schema keywords a route's params may use. The validator ignores
// a keyword it does not know, so a misspelt bound (maxLenght, maximun,
// requird) or one that does not apply to the parameter's type (maxLength
// on an integer) would silently bound nothing: the catalog refuses every
// keyword outside these lists. Annotations that change nothing are
// allowed; default is not, because sqlgate does not apply it (an absent
// optional parameter is the procedure's default or NULL).
var (
	annotationKeywords = []string{"$comment", "deprecated", "description", "examples", "title"}
	topKeywords        = slices.Concat([]string{"$schema", "additionalProperties", "properties", "required", "type"}, annotationKeywords)
	anyTypeKeywords    = slices.Concat([]string{"const", "enum", "type"}, annotationKeywords)
	stringKeywords     = []string{"format", "maxLength", "minLength", "pattern"}
	numberKeywords     = []string{"exclusiveMaximum", "exclusiveMinimum", "maximum", "minimum", "multipleOf"}
	paramKeywords      = map[string][]string{
		"string":  slices.Concat(anyTypeKeywords, stringKeywords),
		"integer": slices.Concat(anyTypeKeywords, numberKeywords),
		"number":  slices.Concat(anyTypeKeywords, numberKeywords),
		"boolean": anyTypeKeywords,
	}
)

// draft2020 is the one $schema a route's params may name: the draft the
// catalog compiles them with.
const draft2020 = "https://json-schema.org/draft/2020-12/schema"

// checkKeywords refuses the keywords of schema that are not in allowed,
// naming where (params, or a parameter) and, for a likely misspelling,
// the keyword meant.
func checkKeywords(where, what string, schema map[string]any, allowed []string) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(schema)) {
		switch {
		case k == "$schema" && slices.Contains(allowed, k):
			if schema[k] != draft2020 {
				errs = append(errs, fmt.Errorf("%s: $schema must be %s or left out: params are compiled as that draft", where, draft2020))
			}
		case slices.Contains(allowed, k):
		case slices.Contains(stringKeywords, k):
			errs = append(errs, fmt.Errorf("%s: keyword %q applies to strings only, and this parameter is of type %v: it would bound nothing", where, k, schema["type"]))
		case slices.Contains(numberKeywords, k):
			errs = append(errs, fmt.Errorf("%s: keyword %q applies to numbers only, and this parameter is of type %v: it would bound nothing", where, k, schema["type"]))
		case k == "default":
			errs = append(errs, fmt.Errorf("%s: keyword \"default\" is not supported: sqlgate does not apply it (an absent optional parameter gets the procedure's default or NULL)", where))
		default:
			errs = append(errs, fmt.Errorf("%s: unknown keyword %q%s; %s may use %s", where, k, suggest(k, allowed), what, strings.Join(slices.Sorted(slices.Values(allowed)), ", ")))
		}
	}
	return errs
}

// suggest returns " (did you mean X?)" for the word of known closest to
// word, within two edits (a transposition is one), or "".
func suggest(word string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(word), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || best == word {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// MaxParamName is the longest parameter or output name a route may
// declare: SQL Server identifiers hold 128 characters, and a variable's
// name includes its @ (a 128-character name fails with Msg 103).
const MaxParamName = 127

// portableNames refuses parameter and output names that some database
// would not keep apart or accept: longer than MaxParamName, or equal to
// another name of the route but for case (SQL Server compares variable
// names case-insensitively under the usual collations: two such
// parameters fail every call with Msg 134, an output and an input with
// Msg 134 or 8143). A catalog is checked for every dialect, so that a
// route keeps working when its database moves.
func portableNames(params, outputs []Param) []error {
	var errs []error
	seen := map[string]string{} // lower-case name -> what declared it first
	check := func(kind, name string) {
		if len(name) > MaxParamName {
			errs = append(errs, fmt.Errorf("%s %q is %d characters long; names are limited to %d (SQL Server adds @ to make a variable of at most 128)", kind, name, len(name), MaxParamName))
		}
		folded := strings.ToLower(name) // identifiers are ASCII (ValidIdentifier)
		if first, clash := seen[folded]; clash {
			errs = append(errs, fmt.Errorf("%s %q and %s differ only in case; SQL Server compares names case-insensitively, so every call would fail: rename one", kind, name, first))
			return
		}
		seen[folded] = fmt.Sprintf("%s %q", kind, name)
	}
	for _, p := range params {
		check("parameter", p.Name)
	}
	for _, o := range outputs {
		check("output", o.Name)
	}
	return errs
}

// reserved reports whether name starts with SessionPrefix in any case.
func reserved(name string) bool {
	return len(name) >= len(SessionPrefix) && strings.EqualFold(name[:len(SessionPrefix)], SessionPrefix)
}
