package opa_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// principalCall is a call of route by subject in groups, with or without MFA.
func principalCall(subject string, groups []string, mfa bool, route string) *policy.Input {
	in := realisticInput()
	in.Principal.Subject, in.Principal.Groups, in.Principal.Roles, in.Principal.MFA = subject, groups, nil, mfa
	in.Route.Subject = route
	in.Params = map[string]any{"id": 7}
	return in
}

// principalCredential is a credential request of typ ("nats" or "sql") by
// subject in groups.
func principalCredential(subject string, groups []string, typ string) *policy.Input {
	in := realisticInput()
	in.Principal.Subject, in.Principal.Groups, in.Principal.Roles = subject, groups, nil
	in.Route, in.Params = nil, nil
	in.Credential = &policy.Credential{Type: typ, Database: "orders", Role: "reader"}
	return in
}

// TestDenyOverridesCustomRules: a policy author adds a route the obvious
// way, `allow if …` in data.sqlgate.call and `pub contains …` in
// data.sqlgate.nats, beside the library. The library's deny list and MFA
// requirement still refuse: a deny-listed principal was allowed the custom
// route and got a NATS credential publishing it, because the library's
// refusals lived inside its own allow rules, which the author's rules
// bypassed.
func TestDenyOverridesCustomRules(t *testing.T) {
	dir := copyRules(t)
	edit(t, filepath.Join(dir, "data.yaml"), "    deny: []\n", `    deny:
      - principals: [u-bob]
        reason: account under investigation
      - principals: [u-carol]
        routes: [orders.v1.import]
        reason: imports frozen
`)
	edit(t, filepath.Join(dir, "data.yaml"), "        break_glass: true\n        max_rows: 100", "        break_glass: true\n        mfa: true\n        max_rows: 100")
	writeFile(t, filepath.Join(dir, "sqlgate", "custom_call.rego"), "package sqlgate.call\n\nallow if true\n")
	writeFile(t, filepath.Join(dir, "sqlgate", "custom_nats.rego"), "package sqlgate.nats\n\npub contains \"orders.v1.import\"\n")
	writeFile(t, filepath.Join(dir, "sqlgate", "custom_sql.rego"), "package sqlgate.sql_credentials\n\nallow if true\n")
	e, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: devCatalog(t), EvalTimeout: testEvalTimeout, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}

	for _, tc := range []struct {
		name        string
		entry       policy.Entry
		in          *policy.Input
		wantAllow   bool
		wantReasons []string
		wantPub     []string
	}{
		// The custom rules work for everyone else, and an allow by them
		// is recorded without reasons, not as break-glass access.
		{"custom_call_allowed", policy.Call, principalCall("u-dave", []string{"auditors"}, true, "orders.v1.import"), true, nil, nil},
		{"custom_pub_granted", policy.NATS, principalCredential("u-dave", []string{"auditors"}, "nats"), true, nil, []string{"orders.v1.import"}},
		{"custom_sql_allowed", policy.SQLCredentials, principalCredential("u-dave", []string{"auditors"}, "sql"), true, nil, nil},

		// A deny-list entry without routes refuses everything.
		{"listed_call", policy.Call, principalCall("u-bob", []string{"auditors"}, true, "orders.v1.import"), false, []string{"account under investigation"}, nil},
		{"listed_call_granted_route", policy.Call, principalCall("u-bob", []string{"sales"}, true, "orders.v1.cancel"), false, []string{"account under investigation"}, nil},
		{"listed_nats", policy.NATS, principalCredential("u-bob", []string{"auditors"}, "nats"), false, []string{"account under investigation"}, nil},
		{"listed_sql", policy.SQLCredentials, principalCredential("u-bob", []string{"auditors"}, "sql"), false, []string{"account under investigation"}, nil},

		// An entry with routes refuses those routes, in calls and in pub.
		{"scoped_call", policy.Call, principalCall("u-carol", []string{"auditors"}, true, "orders.v1.import"), false, []string{"imports frozen"}, nil},
		{"scoped_call_other_route", policy.Call, principalCall("u-carol", []string{"auditors"}, true, "orders.v1.cancel"), true, nil, nil},
		{
			"scoped_nats_nothing_left", policy.NATS, principalCredential("u-carol", []string{"auditors"}, "nats"), false,
			[]string{"every route the policy grants you is refused by its deny_pub rules"},
			nil,
		},
		{
			"scoped_nats", policy.NATS, principalCredential("u-carol", []string{"sales"}, "nats"), true, nil,
			[]string{"orders.v1.cancel", "orders.v1.create", "orders.v1.get"},
		},

		// A route requiring MFA refuses a token without it.
		{
			"mfa_call", policy.Call, principalCall("u-dave", []string{"auditors"}, false, "orders.v1.get"), false,
			[]string{"orders.v1.get requires multi-factor authentication: sign in again with MFA"},
			nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), tc.entry, tc.in)
			if err != nil {
				t.Fatalf("Decide = %v", err)
			}
			if d.Allow != tc.wantAllow || !slices.Equal(d.Reasons, tc.wantReasons) {
				t.Errorf("Decide = allow %v, reasons %q; want allow %v, reasons %q", d.Allow, d.Reasons, tc.wantAllow, tc.wantReasons)
			}
			if tc.entry == policy.NATS && tc.wantAllow && !slices.Equal(d.Obligations.Pub, tc.wantPub) {
				t.Errorf("Decide pub = %q, want %q", d.Obligations.Pub, tc.wantPub)
			}
		})
	}
}

// TestDenyContract: deny and deny_pub as any policy writes them. A
// non-empty deny denies with its messages whatever allow says, and keeps
// the obligations (redact_params applies to denied calls too); a deny the
// engine cannot read as a set of strings fails closed; deny_pub removes
// the subjects it matches from pub, NATS wildcards included.
func TestDenyContract(t *testing.T) {
	const call = "package sqlgate.call\n\nallow := true\n\nredact_params := [\"note\"]\n\n"
	const frozen = "deny contains \"id 2 is frozen\" if input.params.id == 2\n\n" +
		"deny contains \"no id 3\" if input.params.id == 3\n\ndeny contains \"id 3 is frozen\" if input.params.id == 3\n"
	malformed := []string{"the policy returned a malformed decision"}
	for _, tc := range []struct {
		name        string
		deny        string // the rules defining deny
		id          int
		wantAllow   bool
		wantReasons []string
		wantErr     string // in the error, "" for none
	}{
		{"undefined", "", 1, true, nil, ""},
		{"empty", frozen, 1, true, nil, ""},
		{"empty_set", "deny := set()\n", 1, true, nil, ""},
		{"one", frozen, 2, false, []string{"id 2 is frozen"}, ""},
		{"sorted", frozen, 3, false, []string{"id 3 is frozen", "no id 3"}, ""},
		{"array", "deny := [\"frozen\"] if input.params.id == 1\n", 1, false, malformed, "deny is array"},
		{"empty_array", "deny := []\n", 1, false, malformed, "deny is array"},
		{"string", "deny := \"frozen\" if input.params.id == 1\n", 1, false, malformed, "deny is string"},
		{"number", "deny contains 1 if input.params.id == 1\n", 1, false, malformed, "not a string"},
		{"object", "deny := {\"a\": \"frozen\"} if input.params.id == 1\n", 1, false, malformed, "deny is object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := openFS(t, fstest.MapFS{"call.rego": {Data: []byte(call + tc.deny)}})
			in := salesCreate(1)
			in.Params = map[string]any{"id": tc.id, "note": "x"}
			d, err := e.Decide(t.Context(), policy.Call, in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Decide = %v", err)
			case tc.wantErr != "" && (!errors.Is(err, policy.ErrEvaluation) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Decide = %v, want ErrEvaluation naming %q", err, tc.wantErr)
			}
			if d.Allow != tc.wantAllow || !slices.Equal(d.Reasons, tc.wantReasons) {
				t.Errorf("Decide = allow %v, reasons %q; want allow %v, reasons %q", d.Allow, d.Reasons, tc.wantAllow, tc.wantReasons)
			}
			if tc.wantErr == "" && !slices.Equal(d.Obligations.RedactParams, []string{"note"}) {
				t.Errorf("Decide redact_params = %q, want [note] whatever the verdict", d.Obligations.RedactParams)
			}
		})
	}

	// A deny with an undefined allow is still no decision, and says both.
	t.Run("undefined_allow", func(t *testing.T) {
		e := openFS(t, fstest.MapFS{"call.rego": {Data: []byte("package sqlgate.call\n\nallow if input.params.id == 2\n\ndeny contains \"frozen\"\n")}})
		d, err := e.Decide(t.Context(), policy.Call, salesCreate(1))
		if !errors.Is(err, policy.ErrEvaluation) || d.Allow || !slices.Equal(d.Reasons, []string{"frozen", "the policy did not decide"}) {
			t.Errorf("Decide = %+v, %v; want a deny with both reasons and ErrEvaluation", d, err)
		}
	})

	for _, tc := range []struct {
		name, denyPub string
		wantAllow     bool
		wantPub       []string
		wantErr       string
	}{
		{"none", `set()`, true, []string{"orders.v1.create", "orders.v1.get", "reports.daily"}, ""},
		{"exact", `{"orders.v1.get"}`, true, []string{"orders.v1.create", "reports.daily"}, ""},
		{"star", `{"orders.*.get"}`, true, []string{"orders.v1.create", "reports.daily"}, ""},
		{"star_one_token", `{"orders.*"}`, true, []string{"orders.v1.create", "orders.v1.get", "reports.daily"}, ""},
		{"tail", `{"orders.>"}`, true, []string{"reports.daily"}, ""},
		{"tail_needs_a_token", `{"reports.daily.>"}`, true, []string{"orders.v1.create", "orders.v1.get", "reports.daily"}, ""},
		{"prefix_is_no_match", `{"orders.v1"}`, true, []string{"orders.v1.create", "orders.v1.get", "reports.daily"}, ""},
		{"all", `{">"}`, false, nil, ""},
		{"array", `["orders.>"]`, false, nil, "deny_pub is array"},
	} {
		t.Run("deny_pub_"+tc.name, func(t *testing.T) {
			src := "package sqlgate.nats\n\nallow := true\n\npub := {\"orders.v1.create\", \"orders.v1.get\", \"reports.daily\"}\n\ndeny_pub := " + tc.denyPub + "\n"
			e := openFS(t, fstest.MapFS{"nats.rego": {Data: []byte(src)}})
			d, err := e.Decide(t.Context(), policy.NATS, principalCredential("u-1", []string{"sales"}, "nats"))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Decide = %v", err)
			case tc.wantErr != "" && (!errors.Is(err, policy.ErrEvaluation) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Decide = %v, want ErrEvaluation naming %q", err, tc.wantErr)
			}
			if d.Allow != tc.wantAllow || (d.Allow && !slices.Equal(d.Obligations.Pub, tc.wantPub)) {
				t.Errorf("Decide = allow %v, pub %q, reasons %q; want allow %v, pub %q", d.Allow, d.Obligations.Pub, d.Reasons, tc.wantAllow, tc.wantPub)
			}
		})
	}

	// A credential that still follows events keeps them when deny_pub
	// takes every route.
	t.Run("deny_pub_leaves_sub", func(t *testing.T) {
		src := "package sqlgate.nats\n\nallow := true\n\npub := {\"orders.v1.get\"}\n\nsub := {\"orders.v1.created\"}\n\ndeny_pub := {\">\"}\n"
		e := openFS(t, fstest.MapFS{"nats.rego": {Data: []byte(src)}})
		d, err := e.Decide(t.Context(), policy.NATS, principalCredential("u-1", []string{"sales"}, "nats"))
		if err != nil || !d.Allow || len(d.Obligations.Pub) != 0 || !slices.Equal(d.Obligations.Sub, []string{"orders.v1.created"}) {
			t.Errorf("Decide = %+v, %v; want an allow with sub and no pub", d, err)
		}
	})
}

// TestCheckDenyValues: `policy check` and the daemon's load report deny
// and deny_pub values every decision would refuse, and a constant in
// deny_pub that matches no route of the catalog (it would refuse nothing).
func TestCheckDenyValues(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "call.rego"), "package sqlgate.call\n\ndefault allow := false\n\ndeny := [\"frozen\"]\n")
	writeFile(t, filepath.Join(dir, "nats.rego"), "package sqlgate.nats\n\ndefault allow := false\n\ndeny_pub contains \"orders.v1.gett\"\n\ndeny_pub contains \"orders.>\"\n")
	var got []string
	for _, err := range opa.Check(t.Context(), dir, demoCatalog) {
		got = append(got, err.Error())
	}
	for _, want := range []string{
		`call.rego:5: deny is array ["frozen"], not a set of strings (data.sqlgate.call.deny)`,
		`nats.rego:5: "orders.v1.gett" matches no route subject of the route catalog: deny_pub would refuse nothing`,
	} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("Check = %q, want a problem containing %q", got, want)
		}
	}
	if slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, `"orders.>"`) }) {
		t.Errorf("Check = %q, reports orders.>, which matches routes", got)
	}
	_, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: demoCatalog})
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), `"orders.v1.gett" matches no route subject`) {
		t.Errorf("Open = %v, want the deny_pub constant refused", err)
	}
}
