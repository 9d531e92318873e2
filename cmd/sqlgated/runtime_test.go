package main

import (
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// TestTuneRuntime checks that the collector's defaults give way to the
// operator's settings: GOGC and GOMEMLIMIT in the environment, and
// AUTOMEMLIMIT=off. (The default soft limit under a real container limit is
// checked by deploy/image's TestImageRuns.)
func TestTuneRuntime(t *testing.T) {
	gogc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(gogc); debug.SetMemoryLimit(limit) })

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "300MiB") // the runtime read it at start; tuneRuntime must leave the limit alone
	debug.SetMemoryLimit(123 << 20)
	if err := tuneRuntime(); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("GOMEMLIMIT set: tuneRuntime changed the memory limit to %d", got)
	}

	t.Setenv("GOGC", "150")
	if err := tuneRuntime(); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: tuneRuntime changed the GC percent to %d", got)
	}

	// AUTOMEMLIMIT=off leaves the limit; a malformed share is an error to report.
	t.Setenv("GOMEMLIMIT", "")
	if err := os.Unsetenv("GOMEMLIMIT"); err != nil { // restored by t.Setenv's cleanup
		t.Fatal(err)
	}
	t.Setenv("AUTOMEMLIMIT", "off")
	if err := tuneRuntime(); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("AUTOMEMLIMIT=off: tuneRuntime changed the memory limit to %d", got)
	}
	t.Setenv("AUTOMEMLIMIT", "lots")
	if err := tuneRuntime(); err == nil || !strings.Contains(err.Error(), "AUTOMEMLIMIT") {
		t.Errorf("AUTOMEMLIMIT=lots: err = %v, want it named", err)
	}
	attrs := runtimeAttrs(tuneRuntime())
	if len(attrs) != 6 || attrs[0] != "gogc" || attrs[2] != "gomemlimit" || attrs[4] != "gomemlimit_error" {
		t.Errorf("runtimeAttrs = %v, want gogc, gomemlimit and the error", attrs)
	}
}
