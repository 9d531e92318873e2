package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/identity"
)

// logLine is a log record: its message and attributes.
type logLine struct {
	msg   string
	attrs map[string]string
}

// recordingHandler keeps every log record.
type recordingHandler struct {
	mu    *sync.Mutex
	lines *[]logLine
	with  []slog.Attr
}

func newRecordingHandler() *recordingHandler {
	return &recordingHandler{mu: new(sync.Mutex), lines: new([]logLine)}
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	l := logLine{msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.with {
		l.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, l)
	h.mu.Unlock()
	return nil
}

func (h *recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.with = append(append([]slog.Attr(nil), h.with...), as...)
	return &c
}

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

// withMessage returns the lines logged with msg.
func (h *recordingHandler) withMessage(msg string) []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logLine
	for _, l := range *h.lines {
		if l.msg == msg {
			out = append(out, l)
		}
	}
	return out
}

// unverifyingHandler refuses "forged" tokens as naming no one and
// "expired" ones as a trusted issuer's expired token, as broker.Service
// does.
type unverifyingHandler struct{ fakeVerifier }

func (h *unverifyingHandler) Callout(ctx context.Context, req broker.CalloutRequest) (*broker.NATSCredential, error) {
	switch {
	case strings.HasPrefix(req.Token, "forged"):
		return nil, fmt.Errorf("%w: %w", broker.ErrUnverifiedToken, identity.Unauthenticated("invalid_signature", nil))
	case strings.HasPrefix(req.Token, "expired"):
		return nil, identity.Unauthenticated("token_expired", nil)
	}
	return h.fakeVerifier.Callout(ctx, req)
}

const unverifiedMsg = "auth callout refused a token that names no one"

// TestCalloutSamplesRefusalsOfUnverifiedTokens: a flood of tokens that name
// no one (none, too large, refused as unverified by the handler) is
// refused and counted, and logged once per interval with the number of
// refusals not logged; a refusal of a token that names someone is logged
// every time.
func TestCalloutSamplesRefusalsOfUnverifiedTokens(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	logs := newRecordingHandler()
	h := &unverifyingHandler{fakeVerifier{minter: env.Minter, pub: []string{"orders.v1.create"}}}
	c, err := natsauth.StartCallout(t.Context(), env.CalloutConn(t), env.Keys, natsauth.CalloutConfig{Logger: slog.New(logs)}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	c.SetLogClockForTest(func() time.Time { return time.Unix(0, now.Load()) })
	sentinel, err := env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	refused := func(token string) {
		t.Helper()
		opts := []nats.Option{nats.UserCredentialBytes(sentinel)}
		if token != "" {
			opts = append(opts, nats.Token(token))
		}
		nc, err := env.Connect(t, opts...)
		if err == nil {
			nc.Close()
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("connect = %v, want an authorization violation", err)
		}
	}

	const flood = 20
	for i := range flood {
		refused(fmt.Sprintf("forged-%d", i))
	}
	refused("")
	refused(strings.Repeat("x", natsauth.DefaultMaxTokenBytes+1))
	lines := logs.withMessage(unverifiedMsg)
	if len(lines) != 1 || lines[0].attrs["reason"] != "invalid_signature" || lines[0].attrs["suppressed"] != "0" {
		t.Errorf("%d log lines of %d refusals within one interval (first %v), want the first one only", len(lines), flood+2, lines[:min(1, len(lines))])
	}
	if got := c.Stats().Unverified; got != flood+2 {
		t.Errorf("Stats().Unverified = %d, want %d", got, flood+2)
	}

	now.Add(int64(natsauth.CalloutLogEvery))
	refused("forged-next")
	lines = logs.withMessage(unverifiedMsg)
	if len(lines) != 2 || lines[1].attrs["suppressed"] != fmt.Sprint(flood+1) {
		t.Errorf("%d log lines after an interval (last %v), want a second one counting the %d not logged", len(lines), lines[max(0, len(lines)-1):], flood+1)
	}

	for range 3 {
		refused("expired")
	}
	var named int
	for _, l := range logs.withMessage("auth callout refused") {
		if strings.Contains(l.attrs["reason"], "token_expired") {
			named++
		}
	}
	if named != 3 {
		t.Errorf("%d log lines of 3 refusals of expired tokens, want each logged", named)
	}
	if got := c.Stats().Unverified; got != flood+3 {
		t.Errorf("Stats().Unverified = %d after expired tokens, want %d (they name someone)", got, flood+3)
	}
}
