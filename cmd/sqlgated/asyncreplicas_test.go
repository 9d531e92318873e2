package main

import (
	"os"
	"strings"
	"testing"
)

// TestAsyncReplicasConfig: nats.asyncReplicas is 1 to 5, or unset for the
// default (natsvc sizes it by the NATS server's cluster).
func TestAsyncReplicasConfig(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	with := func(v string) string {
		return strings.Replace(string(base), "  queueLen: 1024", "  queueLen: 1024\n  asyncReplicas: "+v, 1)
	}
	for _, tc := range []struct {
		value string
		want  int
	}{{"1", 1}, {"3", 3}, {"5", 5}, {"0", 0}} {
		cfg, err := parseConfig([]byte(with(tc.value)))
		if err != nil {
			t.Errorf("asyncReplicas: %s: %v", tc.value, err)
			continue
		}
		if cfg.NATS.AsyncReplicas != tc.want {
			t.Errorf("asyncReplicas: %s read as %d", tc.value, cfg.NATS.AsyncReplicas)
		}
	}
	if cfg, err := parseConfig(base); err != nil {
		t.Error(err)
	} else if cfg.NATS.AsyncReplicas != 0 {
		t.Errorf("unset: %d, want 0 (sized by natsvc)", cfg.NATS.AsyncReplicas)
	}
	for _, v := range []string{"6", "-1"} {
		_, err := parseConfig([]byte(with(v)))
		if want := "nats.asyncReplicas must be 1 to 5, not " + v; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("asyncReplicas: %s: %v, want %q", v, err, want)
		}
	}
}
