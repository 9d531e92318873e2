package opa

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sqlgate/sqlgate/policy"
)

// maxParamDepth bounds the nesting of parameter values converted to Rego.
const maxParamDepth = 32

// Keys of the input document, shared by every conversion (terms are
// immutable once built, and OPA shares terms across evaluations itself).
var (
	kPrincipal  = ast.StringTerm("principal")
	kRoute      = ast.StringTerm("route")
	kParams     = ast.StringTerm("params")
	kRequest    = ast.StringTerm("request")
	kCredential = ast.StringTerm("credential")

	kIssuer   = ast.StringTerm("issuer")
	kSubject  = ast.StringTerm("subject")
	kObjectID = ast.StringTerm("object_id")
	kEmail    = ast.StringTerm("email")
	kName     = ast.StringTerm("name")
	kGroups   = ast.StringTerm("groups")
	kRoles    = ast.StringTerm("roles")
	kScopes   = ast.StringTerm("scopes")
	kTenant   = ast.StringTerm("tenant")
	kMFA      = ast.StringTerm("mfa")
	kAMR      = ast.StringTerm("amr")
	kACR      = ast.StringTerm("acr")
	kService  = ast.StringTerm("service")
	kAuthTime = ast.StringTerm("auth_time")

	kKind     = ast.StringTerm("kind")
	kTarget   = ast.StringTerm("target")
	kDatabase = ast.StringTerm("database")
	kMode     = ast.StringTerm("mode")
	kTags     = ast.StringTerm("tags")

	kCorrelationID = ast.StringTerm("correlation_id")
	kTime          = ast.StringTerm("time")
	kTimeNS        = ast.StringTerm("time_ns")
	kReason        = ast.StringTerm("reason")
	kTransport     = ast.StringTerm("transport")
	kClient        = ast.StringTerm("client")

	kHost    = ast.StringTerm("host")
	kLang    = ast.StringTerm("lang")
	kVersion = ast.StringTerm("version")
	kUserKey = ast.StringTerm("user_key")
	kAccount = ast.StringTerm("account")

	kType = ast.StringTerm("type")
	kRole = ast.StringTerm("role")
	kTTL  = ast.StringTerm("ttl")
	kVia  = ast.StringTerm("via")
)

// InputValue converts an input into the Rego value a policy sees as `input`,
// without a JSON round trip. The result equals what OPA makes of the input's
// JSON encoding, except that nil groups, roles and tags become empty arrays
// (as the input schema requires) instead of null.
//
// Parameter values may be what encoding/json decodes (nil, bool, float64,
// json.Number, string, []any, map[string]any) or Go integers, float32,
// []string and map[string]string; anything else, a non-finite float, an
// invalid json.Number or nesting deeper than 32 levels is an error.
func InputValue(in *policy.Input) (ast.Value, error) {
	var b builder
	var client *ast.Term
	if in.Request != nil {
		client = b.client(&in.Request.Client)
	}
	return b.input(in, b.principal(&in.Principal), routeOrNil(&b, in.Route), client)
}

func routeOrNil(b *builder, r *policy.Route) *ast.Term {
	if r == nil {
		return nil
	}
	return b.route(r)
}

// builder converts input parts, taking terms from a slab so that a
// conversion costs a few allocations instead of one per term.
type builder struct{ slab []ast.Term }

var (
	emptyString = ast.InternedTerm("")
	trueTerm    = ast.InternedTerm(true)
	falseTerm   = ast.InternedTerm(false)
)

func (b *builder) term(v ast.Value) *ast.Term {
	if len(b.slab) == 0 {
		b.slab = make([]ast.Term, 16)
	}
	t := &b.slab[0]
	b.slab = b.slab[1:]
	t.Value = v
	return t
}

func (b *builder) str(s string) *ast.Term {
	if s == "" {
		return emptyString
	}
	return b.term(ast.String(s))
}

func (b *builder) boolean(v bool) *ast.Term {
	if v {
		return trueTerm
	}
	return falseTerm
}

func (b *builder) int(i int64) *ast.Term {
	if i >= -1 && i <= 512 {
		return ast.InternedTerm(int(i))
	}
	return b.term(ast.Number(strconv.FormatInt(i, 10)))
}

func (b *builder) strings(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = b.str(s)
	}
	return b.term(ast.NewArray(ts...))
}

// optString inserts a string member that JSON encoding omits when empty.
func (b *builder) optString(o ast.Object, k *ast.Term, v string) {
	if v != "" {
		o.Insert(k, b.str(v))
	}
}

// input converts in with the terms of its principal, route and (when in has
// a request) request client given.
func (b *builder) input(in *policy.Input, principal, route, client *ast.Term) (ast.Value, error) {
	obj := ast.NewObjectWithCapacity(5)
	obj.Insert(kPrincipal, principal)
	if route != nil {
		obj.Insert(kRoute, route)
	}
	if len(in.Params) > 0 {
		p := ast.NewObjectWithCapacity(len(in.Params))
		for k, v := range in.Params {
			val, err := b.param(v, 0)
			if err != nil {
				return nil, fmt.Errorf("params.%s: %w", k, err)
			}
			p.Insert(b.str(k), val)
		}
		obj.Insert(kParams, b.term(p))
	}
	if r := in.Request; r != nil {
		req := ast.NewObjectWithCapacity(6)
		req.Insert(kCorrelationID, b.str(r.CorrelationID))
		req.Insert(kTime, b.str(r.Time))
		req.Insert(kTimeNS, b.int(r.TimeNS))
		b.optString(req, kReason, r.Reason)
		req.Insert(kTransport, b.str(r.Transport))
		req.Insert(kClient, client)
		obj.Insert(kRequest, b.term(req))
	}
	if c := in.Credential; c != nil {
		cred := ast.NewObjectWithCapacity(6)
		cred.Insert(kType, b.str(c.Type))
		b.optString(cred, kDatabase, c.Database)
		b.optString(cred, kRole, c.Role)
		cred.Insert(kTTL, b.int(c.TTL))
		b.optString(cred, kUserKey, c.UserKey)
		b.optString(cred, kVia, c.Via)
		obj.Insert(kCredential, b.term(cred))
	}
	return obj, nil
}

func (b *builder) principal(p *policy.Principal) *ast.Term {
	o := ast.NewObjectWithCapacity(14)
	o.Insert(kIssuer, b.str(p.Issuer))
	o.Insert(kSubject, b.str(p.Subject))
	b.optString(o, kObjectID, p.ObjectID)
	b.optString(o, kEmail, p.Email)
	b.optString(o, kName, p.Name)
	o.Insert(kGroups, b.strings(p.Groups))
	o.Insert(kRoles, b.strings(p.Roles))
	if len(p.Scopes) > 0 {
		o.Insert(kScopes, b.strings(p.Scopes))
	}
	b.optString(o, kTenant, p.Tenant)
	o.Insert(kMFA, b.boolean(p.MFA))
	if len(p.AMR) > 0 {
		o.Insert(kAMR, b.strings(p.AMR))
	}
	b.optString(o, kACR, p.ACR)
	o.Insert(kService, b.boolean(p.Service))
	o.Insert(kAuthTime, b.int(p.AuthTime))
	return b.term(o)
}

func (b *builder) client(cl *policy.Client) *ast.Term {
	c := ast.NewObjectWithCapacity(6)
	b.optString(c, kHost, cl.Host)
	b.optString(c, kName, cl.Name)
	b.optString(c, kLang, cl.Lang)
	b.optString(c, kVersion, cl.Version)
	b.optString(c, kUserKey, cl.UserKey)
	b.optString(c, kAccount, cl.Account)
	return b.term(c)
}

func (b *builder) route(r *policy.Route) *ast.Term {
	return b.term(ast.NewObject(
		[2]*ast.Term{kSubject, b.str(r.Subject)},
		[2]*ast.Term{kKind, b.str(r.Kind)},
		[2]*ast.Term{kTarget, b.str(r.Target)},
		[2]*ast.Term{kDatabase, b.str(r.Database)},
		[2]*ast.Term{kMode, b.str(r.Mode)},
		[2]*ast.Term{kTags, b.strings(r.Tags)},
	))
}

// param converts one parameter value.
func (b *builder) param(v any, depth int) (*ast.Term, error) {
	if depth > maxParamDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxParamDepth)
	}
	switch x := v.(type) {
	case nil:
		return ast.InternedNullTerm, nil
	case bool:
		return b.boolean(x), nil
	case string:
		return b.str(x), nil
	case float64:
		return b.float(x)
	case float32:
		return b.float(float64(x))
	case json.Number:
		if !validNumber(string(x)) {
			return nil, errors.New("invalid number")
		}
		return b.term(ast.Number(x)), nil
	case int:
		return b.int(int64(x)), nil
	case int8:
		return b.int(int64(x)), nil
	case int16:
		return b.int(int64(x)), nil
	case int32:
		return b.int(int64(x)), nil
	case int64:
		return b.int(x), nil
	case uint:
		return b.uint(uint64(x)), nil
	case uint8:
		return b.int(int64(x)), nil
	case uint16:
		return b.int(int64(x)), nil
	case uint32:
		return b.int(int64(x)), nil
	case uint64:
		return b.uint(x), nil
	case []string:
		return b.strings(x), nil
	case []any:
		ts := make([]*ast.Term, len(x))
		for i, e := range x {
			t, err := b.param(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			ts[i] = t
		}
		return b.term(ast.NewArray(ts...)), nil
	case map[string]any:
		o := ast.NewObjectWithCapacity(len(x))
		for k, e := range x {
			t, err := b.param(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf(".%s: %w", k, err)
			}
			o.Insert(b.str(k), t)
		}
		return b.term(o), nil
	case map[string]string:
		o := ast.NewObjectWithCapacity(len(x))
		for k, e := range x {
			o.Insert(b.str(k), b.str(e))
		}
		return b.term(o), nil
	default:
		return nil, fmt.Errorf("unsupported type %T", v)
	}
}

func (b *builder) uint(u uint64) *ast.Term {
	if u <= 512 {
		return ast.InternedTerm(int(u))
	}
	return b.term(ast.Number(strconv.FormatUint(u, 10)))
}

// float converts a float the way OPA converts a decoded JSON number.
func (b *builder) float(f float64) (*ast.Term, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errors.New("not a finite number")
	}
	return b.term(ast.Number(strconv.FormatFloat(f, 'g', -1, 64))), nil
}

// validNumber reports whether s is a JSON number (RFC 8259 section 6) whose
// exponent is at most maxExponent either way.
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
		if e, err := strconv.Atoi(s[start:i]); err != nil || e > maxExponent {
			return false
		}
	}
	return i == len(s)
}

// maxExponent bounds the exponent of a json.Number: OPA's evaluator panics
// comparing a number it cannot hold as a float (1e999999999), and no
// parameter needs more than float64's range.
const maxExponent = 400

// maxCached bounds each of the engine's input caches; a full cache is
// emptied and refilled.
const maxCached = 1024

// inputCache remembers the converted principal, route and request client
// of recent inputs: the same caller, route and connection come back request
// after request, and converting them is most of the cost of an input. An
// entry is used only when the cached Go value equals the new one field by
// field (a client is its own key).
type inputCache struct {
	mu         sync.RWMutex
	principals map[[2]string]cachedPrincipal
	routes     map[string]cachedRoute
	clients    map[policy.Client]*ast.Term
}

type cachedPrincipal struct {
	p policy.Principal
	t *ast.Term
}

type cachedRoute struct {
	r policy.Route
	t *ast.Term
}

// value is InputValue with cached principal and route terms.
func (c *inputCache) value(in *policy.Input) (ast.Value, error) {
	var b builder
	var client *ast.Term
	if in.Request != nil {
		client = c.client(&in.Request.Client)
	}
	return b.input(in, c.principal(&in.Principal), c.route(in.Route), client)
}

func (c *inputCache) client(cl *policy.Client) *ast.Term {
	c.mu.RLock()
	t, ok := c.clients[*cl]
	c.mu.RUnlock()
	if ok {
		return t
	}
	var b builder
	t = b.client(cl)
	c.mu.Lock()
	if c.clients == nil || len(c.clients) >= maxCached {
		c.clients = make(map[policy.Client]*ast.Term)
	}
	c.clients[*cl] = t
	c.mu.Unlock()
	return t
}

func (c *inputCache) principal(p *policy.Principal) *ast.Term {
	key := [2]string{p.Issuer, p.Subject}
	c.mu.RLock()
	e, ok := c.principals[key]
	c.mu.RUnlock()
	if ok && principalEqual(&e.p, p) {
		return e.t
	}
	var b builder // a slab of its own: cached terms must not pin a request's terms
	e = cachedPrincipal{p: clonePrincipal(p), t: b.principal(p)}
	c.mu.Lock()
	if c.principals == nil || len(c.principals) >= maxCached {
		c.principals = make(map[[2]string]cachedPrincipal)
	}
	c.principals[key] = e
	c.mu.Unlock()
	return e.t
}

func (c *inputCache) route(r *policy.Route) *ast.Term {
	if r == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.routes[r.Subject]
	c.mu.RUnlock()
	if ok && routeEqual(&e.r, r) {
		return e.t
	}
	var b builder
	e = cachedRoute{r: *r, t: b.route(r)}
	e.r.Tags = slices.Clone(r.Tags)
	c.mu.Lock()
	if c.routes == nil || len(c.routes) >= maxCached {
		c.routes = make(map[string]cachedRoute)
	}
	c.routes[r.Subject] = e
	c.mu.Unlock()
	return e.t
}

// principalEqual compares every field of two principals (nil and empty
// slices convert alike, so they compare alike).
func principalEqual(a, b *policy.Principal) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && a.ObjectID == b.ObjectID &&
		a.Email == b.Email && a.Name == b.Name && a.Tenant == b.Tenant && a.ACR == b.ACR &&
		a.MFA == b.MFA && a.Service == b.Service && a.AuthTime == b.AuthTime &&
		slices.Equal(a.Groups, b.Groups) && slices.Equal(a.Roles, b.Roles) &&
		slices.Equal(a.Scopes, b.Scopes) && slices.Equal(a.AMR, b.AMR)
}

func clonePrincipal(p *policy.Principal) policy.Principal {
	c := *p
	c.Groups, c.Roles, c.Scopes, c.AMR = slices.Clone(p.Groups), slices.Clone(p.Roles), slices.Clone(p.Scopes), slices.Clone(p.AMR)
	return c
}

func routeEqual(a, b *policy.Route) bool {
	return a.Subject == b.Subject && a.Kind == b.Kind && a.Target == b.Target &&
		a.Database == b.Database && a.Mode == b.Mode && slices.Equal(a.Tags, b.Tags)
}
