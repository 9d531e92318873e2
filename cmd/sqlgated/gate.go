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

// gate takes the routed-call endpoints out of the NATS queue group while the
// instance cannot serve them and puts them back when it can, so that the
// other instances take the traffic instead of this one refusing its share
// (Kubernetes readiness only steers HTTP). With no instance serving, callers
// get NATS's no-responders status at once. Requests already received are
// answered.
func (a *app) gate(ctx context.Context, interval time.Duration) error {
	serving := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sqlgate_nats_serving",
		Help: "1 while this instance's routed-call endpoints are in the NATS queue group, 0 while it has left it because it cannot serve (see /readyz).",
	})
	serving.Set(1)
	a.metrics.MustRegister(serving)
	t := time.NewTicker(interval)
	defer t.Stop()
	failed := 0
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
		if len(blocking) == 0 {
			failed = 0
			if !a.micro.Serving() {
				err := a.micro.Rejoin()
				setServing(serving, a.micro.Serving())
				if errors.Is(err, natsvc.ErrStopped) {
					return nil // shutting down
				} else if err != nil {
					a.log.ErrorContext(ctx, "could not rejoin the NATS queue group", slog.String("error", err.Error()))
					continue
				}
				a.log.InfoContext(ctx, "serving routed calls again: rejoined the NATS queue group")
			}
			continue
		}
		if failed++; failed < gateFailures || !a.micro.Serving() {
			continue
		}
		var names []string
		errs := make([]error, 0, len(blocking))
		for _, p := range blocking {
			if !slices.Contains(names, p.Component) {
				names = append(names, p.Component)
			}
			errs = append(errs, p.Err)
		}
		err := a.micro.Withdraw()
		// A failed withdrawal may have unsubscribed some endpoints already:
		// the gauge says what the service reports.
		setServing(serving, a.micro.Serving())
		if err != nil {
			a.log.ErrorContext(ctx, "could not leave the NATS queue group", slog.String("error", err.Error()))
			continue
		}
		a.log.WarnContext(ctx, "cannot serve routed calls: left the NATS queue group until the components recover",
			slog.String("components", strings.Join(names, ", ")), slog.String("error", errors.Join(errs...).Error()))
	}
}

func setServing(g prometheus.Gauge, on bool) {
	if on {
		g.Set(1)
	} else {
		g.Set(0)
	}
}
