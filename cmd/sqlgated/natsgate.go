package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// serverGate admits the messages of one of sqlgated's NATS connections
// only while the server it is connected to is one sqlgated serves through
// (checkNATSServerVersion): every handler of the connection's messages (the
// routed calls, the async fetch, the auth callout) asks admit before
// anything else, and drops the message unanswered when it says no.
//
// The version cannot be checked before a reconnected server delivers:
// nats.go re-sends the subscriptions as it reconnects, hands the server's
// messages to the handlers at once, and runs the ReconnectHandler, where
// the new server's version can be read, afterwards on another goroutine.
// So the gate is
//
//   - closed before each reconnect attempt, synchronously (nats.go's
//     ReconnectToServer callback runs under the connection's lock, before
//     it dials): nothing is taken from then on until the new server's
//     version has been checked;
//   - refused for good when the server the connection leaves or tried is
//     too old (its messages may still wait to be handled), or when a
//     reconnect lands on one: the instance stops (app.refuseServer);
//   - opened by the ReconnectHandler once the server the connection is on
//     now passes the check, unless another reconnect attempt began
//     meanwhile (the generation in state moved on: the next
//     ReconnectHandler decides).
//
// A message admit lets through was therefore sent by a server that passed
// the check. Messages of an accepted server that are handled while the
// gate is closed for a reconnect are dropped too: the caller's request
// times out (it may be retried), an async request is delivered again after
// its ack wait, a login is refused at the server's auth timeout.
type serverGate struct {
	name string
	log  *slog.Logger
	// state is gateOpen and gateRefused in its low bits, and above them the
	// generation: the number of reconnect attempts begun.
	state atomic.Uint64
	// dropped counts the messages refused since the gate last opened;
	// the first of them is logged.
	dropped atomic.Uint64
}

const (
	gateOpen    = 1 << 0
	gateRefused = 1 << 1
	gateGenUnit = 1 << 2
)

// errGateRefused is what serverGate.connected returns once the gate is
// refused: the refusal was reported when it happened.
var errGateRefused = fmt.Errorf("%w: this connection reached one before", errOldNATSServer)

func newServerGate(name string, log *slog.Logger) *serverGate {
	return &serverGate{name: name, log: log}
}

// admit reports whether a message received on the connection may be
// handled; a message it refuses must be dropped without an answer. The
// hot path is one atomic load.
func (g *serverGate) admit() bool {
	if g.state.Load()&gateOpen != 0 {
		return true
	}
	if g.dropped.Add(1) == 1 {
		why := "the connection has not yet checked the version of the server it reconnected to"
		if g.state.Load()&gateRefused != 0 {
			why = "the connection reached a nats-server older than " + minNATSServerVersion
		}
		g.log.WarnContext(context.Background(), "nats message dropped unanswered; the next ones are counted, not logged",
			"conn", g.name, "reason", why)
	}
	return false
}

// connected checks the server nc is connected to now and opens the gate
// if it passes: at the first connect and in the ReconnectHandler. It
// returns the refusal of an old server (the gate is then refused),
// errGateRefused if it was refused already, and nil without opening when
// nc is not connected or a reconnect attempt began while it looked: the
// ReconnectHandler of that attempt decides.
func (g *serverGate) connected(nc *nats.Conn) error {
	s := g.state.Load()
	if s&gateRefused != 0 {
		return errGateRefused
	}
	// "" while not connected, or from a server that announces no version.
	// Within one generation the connection does not become connected
	// again once it was not (each attempt begins a generation), so v and
	// the status read after it describe the same server.
	v := nc.ConnectedServerVersion()
	connected := v != "" || nc.Status() == nats.CONNECTED
	if g.state.Load() != s || !connected {
		return nil
	}
	if err := checkNATSServerVersion(v); err != nil {
		g.refuse()
		return err
	}
	if g.state.CompareAndSwap(s, s|gateOpen) && s&gateOpen == 0 {
		if n := g.dropped.Swap(0); n > 0 {
			g.log.InfoContext(context.Background(), "nats messages dropped while the server was unchecked",
				"conn", g.name, "dropped", n)
		}
	}
	return nil
}

// reconnecting closes the gate before a reconnect attempt, and refuses it
// when the server last connected to or tried (left) is too old: it
// returns that server's refusal. nats.go calls it with the connection's
// lock held: it must not call nc's methods.
func (g *serverGate) reconnecting(left nats.ServerInfo) error {
	err := checkNATSServerVersion(left.Version)
	for {
		s := g.state.Load()
		next := (s&^(gateOpen|gateRefused) + gateGenUnit) | s&gateRefused
		if err != nil {
			next |= gateRefused
		}
		if g.state.CompareAndSwap(s, next) {
			if err != nil && s&gateRefused != 0 {
				return nil // refused already: reported once
			}
			return err
		}
	}
}

// refuse closes the gate for good.
func (g *serverGate) refuse() {
	for {
		s := g.state.Load()
		if g.state.CompareAndSwap(s, s&^gateOpen|gateRefused) {
			return
		}
	}
}

// option is the nats.go option that closes g before each reconnect
// attempt; refused is called (on its own goroutine) with the refusal of
// a server the connection left or tried.
func (g *serverGate) option(refused func(left nats.ServerInfo, err error)) nats.Option {
	return nats.ReconnectToServer(func(_ []nats.Server, left nats.ServerInfo) (*nats.Server, time.Duration) {
		if err := g.reconnecting(left); err != nil {
			go refused(left, err)
		}
		return nil, 0 // nats.go's own choice of server, and its own wait
	})
}
