// Package natsvc is sqlgate's NATS transport.
//
// Synchronous routes are a nats.go/micro service in the broker account with
// one endpoint per route subject (discoverable with `nats micro ls`,
// standard stats and error headers). It turns each request into a
// [broker.Request] whose [broker.Caller] comes only from server-attested data
// (Nats-Request-Info added when the request crossed the users account's
// service import), hands it to a bounded worker pool that calls the
// consumer-owned [Handler], and sends the reply envelope (plus micro's error
// headers on errors) and any follow-up event. A message the NATS server
// published itself (its Nats-Request-Info names an internal client, as for
// a message-trace event) names no user: it is dropped unanswered, before the
// handler, and counted.
//
// Async routes ([StartAsync]) are a JetStream work-queue stream on
// `sqlgate.async.>` and a durable pull consumer: the caller is attested by
// the subject's user key, each message is handled like a request, and it is
// acknowledged once its answer is final.
package natsvc
