package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
)

// TestCorruptNATSInfoSaysWhatToDo: a nats.json that does not parse fails
// call with the file and what to run (creds nats writes a new one), as a
// corrupt state.json does.
func TestCorruptNATSInfoSaysWhatToDo(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	path := filepath.Join(c.home, natsInfoFile)
	if err := os.WriteFile(path, []byte(`{"creds": "/home/alice/.config/sqlg`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`)
	if code != 1 || !strings.Contains(errOut, path) || !strings.HasSuffix(strings.TrimSpace(errOut), ": run sqlgate creds nats") {
		t.Errorf("call with a corrupt nats.json: exit %d, %q; want an error naming the file and ending with \": run sqlgate creds nats\"", code, errOut)
	}
}

// TestMayPublish checks the reading of a user JWT's publish permission
// that tells a subject it does not grant from a refusal of one it does.
func TestMayPublish(t *testing.T) {
	for _, tc := range []struct {
		name        string
		allow, deny []string
		subject     string
		want        bool
	}{
		{"listed", []string{"orders.v1.create"}, nil, "orders.v1.create", true},
		{"typo", []string{"orders.v1.create"}, nil, "orders.v1.creat", false},
		{"prefix_only", []string{"orders.v1"}, nil, "orders.v1.create", false},
		{"star", []string{"orders.*.create"}, nil, "orders.v1.create", true},
		{"star_one_token", []string{"orders.*"}, nil, "orders.v1.create", false},
		{"tail", []string{"sqlgate.async.UKEY.>"}, nil, "sqlgate.async.UKEY.orders.v1.import", true},
		{"tail_needs_a_token", []string{"orders.v1.>"}, nil, "orders.v1", false},
		{"none_listed", nil, nil, "anything", true},
		{"denied", nil, []string{">"}, "orders.v1.create", false},
		{"denied_over_allowed", []string{"orders.>"}, []string{"orders.v1.cancel"}, "orders.v1.cancel", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := jwt.Permission{Allow: tc.allow, Deny: tc.deny}
			if got := mayPublish(p, tc.subject); got != tc.want {
				t.Errorf("mayPublish(allow %q, deny %q, %q) = %t, want %t", tc.allow, tc.deny, tc.subject, got, tc.want)
			}
		})
	}
}
