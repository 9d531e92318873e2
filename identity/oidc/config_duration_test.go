package oidc

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/internal/yamlstrict"
)

// TestDurationErrorNamesLineNotValue checks that a value that is not a
// duration, in any identity key that holds one, is reported with its line
// and type and never quoted (it may be a secret pasted into the wrong key),
// decoded as sqlgated decodes its configuration.
func TestDurationErrorNamesLineNotValue(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-secret"
	tests := []struct {
		name string
		yaml string
	}{
		{"jwksMaxAge", "jwksMaxAge: " + secret + "\n"},
		{"jwksRefreshInterval", "jwksRefreshInterval: " + secret + "\n"},
		{"clockSkew", "issuers:\n  - name: a\n    clockSkew: " + secret + "\n"},
		{"overageTimeout", "issuers:\n  - name: a\n    overage:\n      timeout: " + secret + "\n"},
		{"number", "jwksMaxAge: 5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cfg Config
			err := yamlstrict.Decode([]byte(tc.yaml), &cfg, nil)
			if err == nil {
				t.Fatalf("yamlstrict.Decode(%q) = nil, want an error", tc.yaml)
			}
			wantLine := "line " + strconv.Itoa(strings.Count(tc.yaml, "\n")) + ":"
			if got := err.Error(); strings.Contains(got, secret[:7]) || !strings.Contains(got, wantLine) || !strings.Contains(got, "time.Duration") {
				t.Errorf("yamlstrict.Decode(%q) = %q, want %q and the type, without the value", tc.yaml, got, wantLine)
			}
		})
	}

	var d Duration
	if err := json.Unmarshal([]byte(`"`+secret+`"`), &d); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("json.Unmarshal(%q) = %v, want an error without the value", secret, err)
	}
}

// TestDurationDecodes checks the values a duration key accepts.
func TestDurationDecodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{`"5m"`, 5 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"0", 0},
	}
	for _, tc := range tests {
		var cfg Config
		if err := yamlstrict.Decode([]byte("jwksMaxAge: "+tc.in+"\n"), &cfg, nil); err != nil {
			t.Errorf("jwksMaxAge: %s: %v", tc.in, err)
			continue
		}
		if got := time.Duration(cfg.JWKSMaxAge); got != tc.want {
			t.Errorf("jwksMaxAge: %s = %v, want %v", tc.in, got, tc.want)
		}
	}
}
