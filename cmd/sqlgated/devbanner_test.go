package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestDevBrokenPolicyAtStart is `make run` after an edit that breaks the
// policy (a limit on a parameter the route does not have): sqlgated dev
// starts and denies everything, and everything it says tells so: the
// banner names the error and where to fix it instead of the walkthrough,
// the log does not claim a last good policy, and `sqlgate routes` is told
// that no policy is loaded.
func TestDevBrokenPolicyAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("dev stack: skipped with -short")
	}
	dir := t.TempDir()
	policyDir, err := devPolicy(dir) // the demo policy, as the first start copies it
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(policyDir, "data.yaml")
	b, err := os.ReadFile(data)
	if err != nil || !strings.Contains(string(b), "param: amount") {
		t.Fatalf("demo data.yaml: %v, want a limit on param: amount", err)
	}
	if err := os.WriteFile(data, []byte(strings.Replace(string(b), "param: amount", "param: amout", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDevOn(ctx, []string{"--data-dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn"}, out, out, "devhost")
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "Stop with Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("sqlgated dev exited: %v\n%s", err, out)
		case <-deadline:
			t.Fatalf("sqlgated dev did not start:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	st := loadDevState(dir)
	banner := out.String()
	for _, want := range []string{
		"sqlgate dev started, but its policy failed to load: every request is denied",
		"No policy is loaded, so every call, credential and route listing is denied until\nthe policy in " + policyDir + " loads",
		"amout",         // the error names the typo
		st.HTTPURL,      // the URLs are still there
		"policy loaded", // what to look for once fixed
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("output does not contain %q:\n%s", want, banner)
		}
	}
	for _, notWant := range []string{"sqlgate dev is running", "Next steps", "bin/sqlgate call", "last good policy"} {
		if strings.Contains(banner, notWant) {
			t.Errorf("output contains %q although no policy is loaded:\n%s", notWant, banner)
		}
	}
	if !strings.Contains(banner, "no policy is loaded, so every request is denied until the policy loads") {
		t.Errorf("the log does not say that no policy is loaded:\n%s", banner)
	}

	// What `sqlgate routes` gets.
	s := &devStack{st: st, dir: dir, out: out}
	alice, _ := s.login(t, "alice")
	_, err = alice.Routes(t.Context())
	var apiErr *api.StatusError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Body.Code != "unavailable" || !strings.Contains(apiErr.Body.Message, "no policy is loaded") {
		t.Errorf("routes = %v, want unavailable naming the policy", err)
	}
	// And `sqlgate creds nats`: refused, as unavailable (no policy said no).
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	_, err = alice.NATSCreds(t.Context(), api.NATSCredsRequest{PublicKey: pub})
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Body.Code != "unavailable" || !strings.Contains(apiErr.Body.Message, "no policy is loaded") {
		t.Errorf("nats creds = %v, want unavailable naming the policy", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sqlgated dev: %v\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sqlgated dev did not stop")
	}
}

// TestDevBannerCommandsAreTheREADMEs: every sqlgate command the banner
// suggests is one the README's walkthrough runs, word for word, so a
// newcomer who follows either gets the same results (the banner's queued
// call once lacked the idempotency key that lets its result be read).
func TestDevBannerCommandsAreTheREADMEs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	st := devState{HTTPURL: "http://127.0.0.1:8470", DataDir: ".sqlgate", Users: []devUser{}}
	var b strings.Builder
	printDevBanner(&b, st, time.Second, nil)
	commands := func(text string) []string {
		var out []string
		for line := range strings.Lines(text) {
			cmd, _, _ := strings.Cut(strings.TrimSpace(line), "#")
			if cmd = strings.TrimSpace(cmd); strings.HasPrefix(cmd, "bin/sqlgate ") {
				out = append(out, cmd)
			}
		}
		return out
	}
	walkthrough := commands(string(readme))
	n := 0
	for _, cmd := range commands(b.String()) {
		n++
		if !slices.Contains(walkthrough, cmd) {
			t.Errorf("the banner suggests %q, which the README's walkthrough does not run", cmd)
		}
	}
	if n < 5 {
		t.Errorf("the banner suggests %d sqlgate commands, want the walkthrough's first steps:\n%s", n, b.String())
	}
}
