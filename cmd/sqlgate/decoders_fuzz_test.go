package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	broute "github.com/sqlgate/sqlgate/broker/route"
)

// FuzzPeriodBound reads arbitrary --from and --to values of sqlgate audit
// evidence. A refused value is a usage error naming the flag; an accepted
// one is a UTC time; a date is its midnight UTC, and a date or RFC 3339
// time (what GET /api/v1/audit/evidence takes) is that instant, as the
// broker reads it.
func FuzzPeriodBound(f *testing.F) {
	for _, v := range []string{
		"2026-11-27", "2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123456789+02:00", "now", "-24h", "24h", "0", "",
		"2026-02-30", "2026-11-27T24:00:00Z", "0001-01-01", "9999-12-31T23:59:59Z", "-2562047h47m16.854775808s", "1d", "NOW",
	} {
		f.Add(v)
	}
	now := time.Date(2026, 11, 27, 10, 5, 0, 0, time.FixedZone("CET", 3600))
	f.Fuzz(func(t *testing.T, v string) {
		got, err := parsePeriodBound("--from", v, now)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--from") {
				t.Fatalf("parsePeriodBound(%q): %v, want a usage error naming --from", v, err)
			}
			if d, derr := time.Parse(time.DateOnly, v); derr == nil {
				t.Fatalf("parsePeriodBound refused the date %q (%v): %v", v, d, err)
			}
			if p, perr := time.Parse(time.RFC3339, v); perr == nil {
				t.Fatalf("parsePeriodBound refused the RFC 3339 time %q (%v): %v", v, p, err)
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("parsePeriodBound(%q) = %v, not in UTC", v, got)
		}
		if d, derr := time.Parse(time.DateOnly, v); derr == nil && !got.Equal(d) {
			t.Fatalf("parsePeriodBound(%q) = %v, want midnight UTC %v", v, got, d)
		}
		if p, perr := time.Parse(time.RFC3339, v); perr == nil && !got.Equal(p) {
			t.Fatalf("parsePeriodBound(%q) = %v, want %v", v, got, p)
		}
	})
}

// FuzzExamplePayload reads the parameter schemas the broker serves
// (GET /api/v1/routes, from the route catalog's params) to build the
// example call sqlgate creds nats prints. The catalog decides which
// schemas exist: whatever params it accepts, an example it builds is one
// the route accepts (its call would not fail on its own payload), and
// nothing panics.
func FuzzExamplePayload(f *testing.F) {
	for _, p := range []string{
		"{type: object, properties: {id: {type: integer, minimum: 1}}, required: [id]}",
		"{type: object, properties: {customer: {type: string, minLength: 1, maxLength: 100}, amount: {type: number, minimum: 0.01, maximum: 1000000}, note: {type: [string, 'null'], maxLength: 500}}, required: [customer, amount]}",
		"{type: object, properties: {day: {type: string, format: date}, at: {type: string, format: date-time}, u: {type: string, format: uuid}}, required: [day, at, u]}",
		"{type: object, properties: {n: {type: integer, exclusiveMinimum: 2.5, exclusiveMaximum: 4, multipleOf: 3}}, required: [n]}",
		"{type: object, properties: {n: {type: number, multipleOf: 0.1, minimum: 0.25}}, required: [n]}",
		"{type: object, properties: {s: {type: string, minLength: 5000}}, required: [s]}",
		"{type: object, properties: {n: {type: integer, minimum: 1e300}}, required: [n]}",
		"{type: object, properties: {n: {type: integer, minimum: 9007199254740993}}, required: [n]}",
		"{type: object, properties: {s: {type: string, minLength: 2000000}}, required: [s]}",
		"{type: object, properties: {s: {type: string, enum: [a, b]}, c: {const: 7}, b: {type: boolean}}, required: [s, c, b]}",
		"{type: object, properties: {e: {type: string, format: email, maxLength: 3}}, required: [e]}",
		"{type: object, additionalProperties: true}",
		"{type: object}",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, params string) {
		var schema map[string]any
		if yaml.Unmarshal([]byte(params), &schema) != nil {
			return
		}
		c, err := broute.New([]broute.Spec{{Subject: "t.v1.get", Procedure: "p", Database: "d", Tags: []string{"read"}, Params: schema}})
		if err != nil {
			return // the catalog refuses it: sqlgated never serves it
		}
		r, _ := c.Lookup("t.v1.get")
		payload, ok := examplePayload(r.SchemaJSON, r.MaxPayload)
		if !ok {
			return
		}
		if _, err := r.Decode([]byte(payload)); err != nil {
			t.Fatalf("params %s (served as %s): the example payload %.200q is refused: %v", params, r.SchemaJSON, payload, err)
		}
	})
}
