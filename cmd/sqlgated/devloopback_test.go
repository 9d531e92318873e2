package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevRefusesOtherHosts: sqlgated dev serves on loopback only. An --http
// on another address used to fail late, after the data directory, NATS and
// the audit log were set up ("issuer …: plain http is allowed only on a
// loopback address"), and an --nats on another address served plain NATS
// to the network. Both are now refused as usage errors that say so and
// point to serve, before anything is created.
func TestDevRefusesOtherHosts(t *testing.T) {
	for _, args := range [][]string{
		{"--http", "0.0.0.0:0"},
		{"--http", ":8470"},
		{"--http", "192.0.2.10:8470"},
		{"--nats", "0.0.0.0:0"},
		{"--http", "127.0.0.1:0", "--nats", "[::]:4470"},
	} {
		dir := filepath.Join(t.TempDir(), "dev")
		var out syncBuffer
		// A guard only: a dev that starts instead of refusing runs until
		// its context ends.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := runDevOn(ctx, append([]string{"--data-dir", dir, "--log-level", "warn"}, args...), &out, &out, "devhost")
		cancel()
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "loopback only") || !strings.Contains(err.Error(), "sqlgated serve") {
			t.Errorf("dev %q = %v, want a usage error saying dev serves loopback only and serve serves other hosts", args, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dev %q created its data directory (%v)", args, err)
		}
	}
}
