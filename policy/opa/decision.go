package opa

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
//
// Deny overrides allow: a non-empty deny makes the decision a deny whose
// reasons are deny's messages, whatever allow says, so that no allow rule a
// policy adds escapes the refusals written as deny rules (the library's deny
// list and MFA). Likewise the subjects deny_pub matches are removed from pub,
// whatever rule added them; an allow left with neither pub nor sub by that is
// a deny.
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
	denials, err := d.stringSet("deny")
	if err != nil {
		return false, reasons, ob, err
	}
	if len(denials) > 0 {
		reasons = denials
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
	denyPub, err := d.stringSet("deny_pub")
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return false, reasons, policy.Obligations{}, err
	}
	emptied := false
	if len(denyPub) > 0 && len(ob.Pub) > 0 {
		ob.Pub = slices.DeleteFunc(ob.Pub, func(s string) bool {
			return slices.ContainsFunc(denyPub, func(p string) bool { return subjectMatches(p, s) })
		})
		if len(ob.Pub) == 0 {
			ob.Pub, emptied = nil, true
		}
	}
	switch {
	case len(denials) > 0:
		return false, reasons, ob, nil
	case emptied && bool(allow) && len(ob.Sub) == 0:
		return false, []string{reasonAllPubDenied}, ob, nil
	}
	return bool(allow), reasons, ob, nil
}

// reasonAllPubDenied is the reason of a NATS allow whose every subject in pub
// deny_pub removed, with no sub left either: there is nothing to grant.
const reasonAllPubDenied = "every route the policy grants you is refused by its deny_pub rules"

// stringSet decodes a set of strings (in sorted order); an undefined key is
// an empty set. Anything else, an array included, is an error: deny and
// deny_pub are sets, and a value the engine cannot read must not pass for an
// empty one.
func (d document) stringSet(key string) ([]string, error) {
	v, err := d.value(key)
	if err != nil || v == nil {
		return nil, err
	}
	if _, ok := v.(ast.Set); !ok {
		return nil, fmt.Errorf("%s is %s %v, not a set of strings", key, ast.ValueName(v), v)
	}
	return stringList(key, v)
}

// subjectMatches reports whether the NATS subject pattern p matches subject
// s: tokens separated by dots, where "*" matches any one token and a final
// ">" matches one or more (so deny_pub contains "orders.>" refuses every
// orders route, as it would in a NATS permission).
func subjectMatches(p, s string) bool {
	for {
		pt, prest, pmore := strings.Cut(p, ".")
		st, srest, smore := strings.Cut(s, ".")
		switch {
		case pt == ">" && !pmore:
			return true
		case pt != "*" && pt != st:
			return false
		case !pmore || !smore:
			return pmore == smore
		}
		p, s = prest, srest
	}
}

// checkValue checks a value of one decision key as decode does, for [Check].
func checkValue(key string, v ast.Value) error {
	var err error
	switch key {
	case "allow":
		if _, ok := v.(ast.Boolean); !ok {
			err = fmt.Errorf("allow is %s %v, not a boolean", ast.ValueName(v), v)
		}
	case "max_rows", "timeout_ms":
		_, err = count(key, v)
	case "ttl":
		_, err = duration(key, v)
	case "reasons", "redact_params", "pub", "sub":
		_, err = stringList(key, v)
	case "deny", "deny_pub":
		if _, ok := v.(ast.Set); !ok {
			err = fmt.Errorf("%s is %s %v, not a set of strings", key, ast.ValueName(v), v)
		} else {
			_, err = stringList(key, v)
		}
	}
	return err
}

// maxCount bounds integer obligations (rows, milliseconds).
const maxCount = math.MaxInt32

// count decodes a non-negative integer: any number that is whole and in
// range, however written (100, 1e2, 100.0, 1000e-1); fractions are refused.
func count(key string, v ast.Value) (int, error) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("%s is %s %v, not a number", key, ast.ValueName(v), v)
	}
	// A plain integer (100), as policies write counts, is decoded without
	// the parser's allocations: max_rows and timeout_ms come with most
	// decisions. Int64 also takes forms the parser refuses ("+1", "1."),
	// so only digits are taken from it.
	i, ok := n.Int64()
	if !ok || !digits(string(n)) {
		i, ok = wholeNumber(string(n), maxCount)
	}
	if !ok || i < 0 || i > maxCount {
		return 0, fmt.Errorf("%s is %v, not an integer between 0 and %d", key, n, maxCount)
	}
	return int(i), nil
}

// digits reports whether s is a non-empty string of decimal digits.
func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// jsonNumber splits a JSON number into sign, integer digits, fraction
// digits and exponent.
var jsonNumber = regexp.MustCompile(`^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$`)

// wholeNumber returns the value of the JSON number s if it is a whole number
// from 0 to limit (limit < 10^18). It works on the decimal digits, exactly and
// without building the number: 1e999999999 is refused at once.
func wholeNumber(s string, limit int64) (int64, bool) {
	m := jsonNumber.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	digits := strings.TrimLeft(m[2]+m[3], "0")
	if digits == "" {
		return 0, true // zero, whatever its sign and exponent
	}
	if m[1] == "-" {
		return 0, false
	}
	// value = digits × 10^exp
	exp := -len(m[3])
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	if m[4] != "" {
		e, err := strconv.Atoi(m[4])
		if err != nil || e > 1<<20 || e < -(1<<20) {
			return 0, false // far out of range, or a fraction: its digits cannot absorb the exponent
		}
		exp += e
	}
	if exp < 0 || len(digits)+exp > 18 {
		return 0, false // a fraction (the last digit is not 0), or above 10^18
	}
	i, err := strconv.ParseInt(digits+strings.Repeat("0", exp), 10, 64)
	if err != nil || i > limit {
		return 0, false
	}
	return i, true
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
