package opa

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/sqlgate/sqlgate/policy"
)

// errUndefinedAllow is the evaluation failure of a policy whose allow rule has
// no value for an input.
var errUndefinedAllow = errors.New("allow is undefined for this input")

// document is a decision document read from the query result: for each key
// an array holding the key's value, empty when the rule is undefined.
type document struct {
	keys   []string
	values *ast.Array
}

// documentOf reads the decision document of a query over keys.
func documentOf(rs rego.ResultSet, keys []string) (document, error) {
	if len(rs) != 1 {
		return document{}, fmt.Errorf("query returned %d results", len(rs))
	}
	t, ok := rs[0].Bindings["decision"].(*ast.Term)
	if !ok {
		return document{}, fmt.Errorf("query returned %T", rs[0].Bindings["decision"])
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok || arr.Len() != len(keys) {
		return document{}, fmt.Errorf("query returned %v", t.Value)
	}
	return document{keys: keys, values: arr}, nil
}

// value returns the value of a key, or nil when it is undefined.
func (d document) value(key string) (ast.Value, error) {
	i := slices.Index(d.keys, key)
	if i < 0 {
		return nil, nil
	}
	arr, ok := d.values.Elem(i).Value.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected result %v", key, d.values.Elem(i))
	}
	switch arr.Len() {
	case 0:
		return nil, nil
	case 1:
		return arr.Elem(0).Value, nil
	default:
		return nil, fmt.Errorf("%s has several values", key)
	}
}

// decode turns a decision document into allow, reasons and obligations. Any
// malformed value is an error; the caller denies.
func (d document) decode() (bool, []string, policy.Obligations, error) {
	var ob policy.Obligations
	v, err := d.value("allow")
	if err != nil {
		return false, nil, ob, err
	}
	var reasons []string
	if rv, err := d.value("reasons"); err != nil {
		return false, nil, ob, err
	} else if rv != nil {
		if reasons, err = stringList("reasons", rv); err != nil {
			return false, nil, ob, err
		}
	}
	if v == nil {
		return false, reasons, ob, errUndefinedAllow
	}
	allow, ok := v.(ast.Boolean)
	if !ok {
		return false, reasons, ob, fmt.Errorf("allow is %s %v, not a boolean", ast.ValueName(v), v)
	}
	var errs []error
	for _, key := range policy.ObligationKeys {
		v, err := d.value(key)
		if err == nil && v != nil {
			switch key {
			case "max_rows":
				ob.MaxRows, err = count(key, v)
			case "timeout_ms":
				var ms int
				ms, err = count(key, v)
				ob.Timeout = time.Duration(ms) * time.Millisecond
			case "redact_params":
				ob.RedactParams, err = stringList(key, v)
			case "ttl":
				ob.TTL, err = duration(key, v)
			case "pub":
				ob.Pub, err = stringList(key, v)
			case "sub":
				ob.Sub, err = stringList(key, v)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return false, reasons, policy.Obligations{}, err
	}
	return bool(allow), reasons, ob, nil
}

// maxCount bounds integer obligations (rows, milliseconds).
const maxCount = math.MaxInt32

// count decodes a non-negative integer.
func count(key string, v ast.Value) (int, error) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("%s is %s %v, not a number", key, ast.ValueName(v), v)
	}
	i, ok := n.Int64()
	if !ok || i < 0 || i > maxCount {
		return 0, fmt.Errorf("%s is %v, not an integer between 0 and %d", key, n, maxCount)
	}
	return int(i), nil
}

// maxTTL bounds credential lifetimes: nothing sqlgate issues lives a year.
const maxTTL = 366 * 24 * time.Hour

// duration decodes a TTL: a number of seconds or a Go duration string.
func duration(key string, v ast.Value) (time.Duration, error) {
	var d time.Duration
	switch x := v.(type) {
	case ast.Number:
		secs, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, fmt.Errorf("%s is %v, not a number of seconds", key, x)
		}
		ns := secs * float64(time.Second)
		if ns < 0 || ns > float64(maxTTL) {
			return 0, fmt.Errorf("%s is %v seconds, not between 0 and %s", key, x, maxTTL)
		}
		d = time.Duration(ns)
	case ast.String:
		var err error
		if d, err = time.ParseDuration(string(x)); err != nil {
			return 0, fmt.Errorf("%s is %q, not a duration such as \"15m\"", key, string(x))
		}
		if d < 0 || d > maxTTL {
			return 0, fmt.Errorf("%s is %s, not between 0 and %s", key, d, maxTTL)
		}
	default:
		return 0, fmt.Errorf("%s is %s %v, not seconds or a duration string", key, ast.ValueName(v), v)
	}
	return d, nil
}

// stringList decodes a set (in sorted order) or array of strings.
func stringList(key string, v ast.Value) ([]string, error) {
	var arr *ast.Array
	switch x := v.(type) {
	case ast.Set:
		arr = x.Sorted()
	case *ast.Array:
		arr = x
	default:
		return nil, fmt.Errorf("%s is %s %v, not a set or array of strings", key, ast.ValueName(v), v)
	}
	if arr.Len() == 0 {
		return nil, nil
	}
	out := make([]string, arr.Len())
	for i := range arr.Len() {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("%s holds %v, which is not a string", key, arr.Elem(i))
		}
		out[i] = string(s)
	}
	return out, nil
}
