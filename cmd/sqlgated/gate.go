package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/web"
)

// defaultGateInterval is how often an instance checks whether it can serve
// routed calls.
const defaultGateInterval = 5 * time.Second

// gateFailures is how many checks in a row must fail before the instance
// leaves the queue group: one slow ping does not move traffic.
const gateFailures = 2

// blocksCalls reports whether a readiness problem refuses every routed call
// this instance would take: with its control database or audit log failing
// every call is refused (audit fails closed), and with no policy loaded every
// call is denied. A failed reload (the previous policy keeps serving) and a
// lost NATS connection (then nothing arrives anyway) do not.
func (a *app) blocksCalls(p web.NotReady) bool {
	switch p.Component {
	case "control database", "audit log":
		return true
	case "policy":
		return !a.engine.Status().Ready()
	}
	return false
}

// queueService is the routed-call service as the gate drives it
// (*natsvc.Service).
type queueService interface {
	Withdraw() error
	Rejoin() error
	Serving() bool
}

// pausable is the async consumer as the gate drives it (*natsvc.Async).
type pausable interface {
	Pause() error
	Resume() error
	Paused() bool
}

// gate takes the routed-call endpoints out of the NATS queue group while the
// instance cannot serve them and puts them back when it can, so that the
// other instances take the traffic instead of this one refusing its share
// (Kubernetes readiness only steers HTTP). With no instance serving, callers
// get NATS's no-responders status at once. Requests already received are
// answered. The async consumer pauses and resumes with them: the queued
// requests wait in the stream instead of meeting the failure.
func (a *app) gate(ctx context.Context, interval time.Duration) error {
	serving := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sqlgate_nats_serving",
		Help: "1 while this instance's routed-call endpoints are in the NATS queue group, 0 while it has left it because it cannot serve (see /readyz).",
	})
	serving.Set(1)
	a.metrics.MustRegister(serving)
	g := &gateState{micro: a.micro, serving: serving, log: a.log}
	if a.async != nil {
		g.async = a.async
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// A control database behind a silent partition would hold a ping
		// for minutes: each check gets the interval.
		cctx, cancel := context.WithTimeout(ctx, interval)
		problems := a.ready(cctx)
		cancel()
		var blocking []web.NotReady
		for _, p := range problems {
			if a.blocksCalls(p) {
				blocking = append(blocking, p)
			}
		}
		if g.check(ctx, blocking) {
			return nil // shutting down
		}
	}
}

// gateState is what the gate keeps between checks.
type gateState struct {
	micro   queueService
	async   pausable // nil without async routes
	serving prometheus.Gauge
	log     *slog.Logger
	failed  int
}

// check applies one check's blocking problems: after gateFailures failed
// checks in a row it withdraws the endpoints and pauses the async consumer;
// at the first check that passes it rejoins and resumes them. A step that
// fails is tried again at the next check. It reports true when the
// service has stopped (shutdown).
func (g *gateState) check(ctx context.Context, blocking []web.NotReady) (stopped bool) {
	if len(blocking) == 0 {
		g.failed = 0
		if !g.micro.Serving() {
			err := g.micro.Rejoin()
			setServing(g.serving, g.micro.Serving())
			if errors.Is(err, natsvc.ErrStopped) {
				return true
			} else if err != nil {
				g.log.ErrorContext(ctx, "could not rejoin the NATS queue group", slog.String("error", err.Error()))
			} else {
				g.log.InfoContext(ctx, "serving routed calls again: rejoined the NATS queue group")
			}
		}
		if g.async != nil && g.async.Paused() {
			err := g.async.Resume()
			if errors.Is(err, natsvc.ErrStopped) {
				return true
			} else if err != nil {
				g.log.ErrorContext(ctx, "could not resume the async consumer", slog.String("error", err.Error()))
			} else {
				g.log.InfoContext(ctx, "running queued async requests again: resumed the async consumer")
			}
		}
		return false
	}
	if g.failed++; g.failed < gateFailures {
		return false
	}
	withdraw := g.micro.Serving()
	pause := g.async != nil && !g.async.Paused()
	if !withdraw && !pause {
		return false
	}
	var names []string
	errs := make([]error, 0, len(blocking))
	for _, p := range blocking {
		if !slices.Contains(names, p.Component) {
			names = append(names, p.Component)
		}
		errs = append(errs, p.Err)
	}
	if withdraw {
		err := g.micro.Withdraw()
		// A failed withdrawal may have unsubscribed some endpoints already:
		// the gauge says what the service reports.
		setServing(g.serving, g.micro.Serving())
		if err != nil {
			g.log.ErrorContext(ctx, "could not leave the NATS queue group", slog.String("error", err.Error()))
		} else {
			g.log.WarnContext(ctx, "cannot serve routed calls: left the NATS queue group until the components recover",
				slog.String("components", strings.Join(names, ", ")), slog.String("error", errors.Join(errs...).Error()))
		}
	}
	if pause {
		// Paused, the consumer fetches nothing even when the pause reports
		// an error (the end of the fetch not confirmed yet).
		if err := g.async.Pause(); errors.Is(err, natsvc.ErrStopped) {
			return true
		} else if err != nil {
			g.log.ErrorContext(ctx, "async consumer paused, but its fetch has not ended yet", slog.String("error", err.Error()))
		} else {
			g.log.WarnContext(ctx, "cannot run queued async requests: paused the async consumer until the components recover; the requests wait in the stream",
				slog.String("components", strings.Join(names, ", ")))
		}
	}
	return false
}

func setServing(g prometheus.Gauge, on bool) {
	if on {
		g.Set(1)
	} else {
		g.Set(0)
	}
}
