package main

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/web"
)

// fakeService stands for the routed-call service in the queue group.
type fakeService struct {
	serving            bool
	withdraws, rejoins int
}

func (f *fakeService) Withdraw() error { f.withdraws++; f.serving = false; return nil }
func (f *fakeService) Rejoin() error   { f.rejoins++; f.serving = true; return nil }
func (f *fakeService) Serving() bool   { return f.serving }

// fakeConsumer stands for the async consumer; resumeErr and pauseErr are
// what the next Resume and Pause return.
type fakeConsumer struct {
	paused              bool
	pauses, resumes     int
	pauseErr, resumeErr error
}

func (f *fakeConsumer) Pause() error {
	f.pauses++
	if errors.Is(f.pauseErr, natsvc.ErrStopped) {
		return f.pauseErr
	}
	f.paused = true
	return f.pauseErr
}

func (f *fakeConsumer) Resume() error {
	f.resumes++
	if f.resumeErr != nil {
		return f.resumeErr
	}
	f.paused = false
	return nil
}

func (f *fakeConsumer) Paused() bool { return f.paused }

func newGateState(svc *fakeService, c *fakeConsumer) *gateState {
	g := &gateState{micro: svc, serving: prometheus.NewGauge(prometheus.GaugeOpts{Name: "serving"}), log: slog.New(slog.DiscardHandler)}
	g.serving.Set(1)
	if c != nil {
		g.async = c
	}
	return g
}

var auditDown = []web.NotReady{{Component: "audit log", Err: errors.New("audit store refuses writes")}}

// TestGatePausesAsyncWithQueueGroup: when the instance cannot serve, the
// async consumer pauses together with the routed-call endpoints leaving
// the queue group (the queued requests wait in the stream instead of
// meeting the failure), and resumes when they rejoin.
func TestGatePausesAsyncWithQueueGroup(t *testing.T) {
	svc, c := &fakeService{serving: true}, &fakeConsumer{}
	g := newGateState(svc, c)
	ctx := t.Context()

	g.check(ctx, auditDown) // one failed check moves nothing
	if !svc.serving || c.paused {
		t.Fatalf("after one failed check: serving %v, paused %v; want serving, fetching", svc.serving, c.paused)
	}
	g.check(ctx, auditDown)
	if svc.serving || !c.paused || testutil.ToFloat64(g.serving) != 0 {
		t.Fatalf("after two failed checks: serving %v, paused %v, gauge %v; want withdrawn, paused, 0", svc.serving, c.paused, testutil.ToFloat64(g.serving))
	}
	g.check(ctx, auditDown)
	if svc.withdraws != 1 || c.pauses != 1 {
		t.Errorf("a third failed check withdrew %d and paused %d times in all, want once each", svc.withdraws, c.pauses)
	}
	if stopped := g.check(ctx, nil); stopped || !svc.serving || c.paused || testutil.ToFloat64(g.serving) != 1 {
		t.Fatalf("after a passing check: serving %v, paused %v, gauge %v, stopped %v; want serving and fetching again",
			svc.serving, c.paused, testutil.ToFloat64(g.serving), stopped)
	}
}

// TestGateRetriesResume: a resume that fails leaves the consumer paused and
// is tried again at the next passing check; the endpoints rejoin anyway.
func TestGateRetriesResume(t *testing.T) {
	svc, c := &fakeService{serving: true}, &fakeConsumer{}
	g := newGateState(svc, c)
	ctx := t.Context()
	g.check(ctx, auditDown)
	g.check(ctx, auditDown)
	c.resumeErr = errors.New("nats: connection closed")
	g.check(ctx, nil)
	if !svc.serving || !c.paused {
		t.Fatalf("after a failed resume: serving %v, paused %v; want serving, still paused", svc.serving, c.paused)
	}
	c.resumeErr = nil
	g.check(ctx, nil)
	if c.paused || c.resumes != 2 || svc.rejoins != 1 {
		t.Errorf("after the next check: paused %v, %d resumes, %d rejoins; want fetching after 2 resumes, 1 rejoin", c.paused, c.resumes, svc.rejoins)
	}
}

// TestGateWithoutAsyncRoutes: with no async route there is no consumer;
// the endpoints still leave and rejoin the queue group.
func TestGateWithoutAsyncRoutes(t *testing.T) {
	svc := &fakeService{serving: true}
	g := newGateState(svc, nil)
	ctx := t.Context()
	g.check(ctx, auditDown)
	g.check(ctx, auditDown)
	if svc.serving {
		t.Fatal("endpoints still serving after two failed checks")
	}
	g.check(ctx, nil)
	if !svc.serving {
		t.Fatal("endpoints not serving after a passing check")
	}
}

// TestGateStopsWithConsumer: a consumer stopped (shutdown) ends the gate.
func TestGateStopsWithConsumer(t *testing.T) {
	svc, c := &fakeService{serving: true}, &fakeConsumer{pauseErr: natsvc.ErrStopped}
	g := newGateState(svc, c)
	g.check(t.Context(), auditDown)
	if stopped := g.check(t.Context(), auditDown); !stopped {
		t.Error("check after the consumer stopped did not report the shutdown")
	}
}
