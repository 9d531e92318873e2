package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// The durable path (DESIGN section 2, async routes). A client queues the
// insert in a JetStream stream, waits for the stream's acknowledgement, then
// for the answer the consumer sends after the SQL commit. sqlgate's consumer
// runs the whole request path (identity from the subject, policy, durable
// intent, one transaction with the idempotency record, outcome); the bare
// consumer only runs the insert, answers and acks, as a plain at-least-once
// JetStream worker would.

// Bench subjects.
const (
	benchSubject = "bench.orders.create" // sync route
	// benchBatchSubject is the same sync route with batch (group commit):
	// the sqlgate+batch path.
	benchBatchSubject = "bench.orders.create_batched"
	benchAsyncSubject = "bench.orders.import" // async route
	// The bare stream's subjects and the header that names where the bare
	// consumer answers.
	bareAsyncSubjects = "bare.async.>"
	bareAsyncSubject  = "bare.async." + benchAsyncSubject
	bareReplyHeader   = "Bench-Reply-To"
	bareReplyPrefix   = "bare.reply."
)

// startBareConsumer is the bare durable path: a work-queue stream on the
// bare server and a durable pull consumer with the same worker pool, pull
// batch and ack window as sqlgate's (natsvc.StartAsync). Each message is
// decoded, inserted, answered and acked.
func startBareConsumer(ctx context.Context, nc *nats.Conn, workers int, exec bareExec) (func(), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BARE_ASYNC", Subjects: []string{bareAsyncSubjects},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: natsvc.DuplicateWindow,
	})
	if err != nil {
		return nil, err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxAckPending: -1, // as sqlgated's consumer
	})
	if err != nil {
		return nil, err
	}
	msgs := make(chan jetstream.Msg, workers)
	done := make(chan struct{}, workers) // never blocks a worker that exits
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for m := range msgs {
				answer := bareAnswer(ctx, m, exec)
				if to := m.Headers().Get(bareReplyHeader); to != "" {
					_ = nc.Publish(to, answer)
				}
				_ = m.Ack()
			}
		}()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { msgs <- m }, jetstream.PullMaxMessages(workers)) // as natsvc fetches: its workers' number ahead
	if err != nil {
		close(msgs)
		return nil, err
	}
	return func() {
		cc.Drain()
		<-cc.Closed()
		close(msgs)
		for range workers {
			<-done
		}
	}, nil
}

// bareAnswer runs one bare durable message and returns its answer, which
// echoes the message's correlation id.
func bareAnswer(ctx context.Context, m jetstream.Msg, exec bareExec) []byte {
	corr := strconv.Quote(m.Headers().Get(natsvc.HeaderCorrelationID))
	id, err := exec.insert(ctx, m.Data())
	if err != nil {
		return []byte(`{"ok":false,"correlation_id":` + corr + `,"error":{"message":` + strconv.Quote(err.Error()) + `}}`)
	}
	return []byte(`{"ok":true,"correlation_id":` + corr + `,"result":{"rows":[{"id":` + strconv.FormatInt(id, 10) + `}]}}`)
}

// durableClient is one closed-loop client of the durable path: where it
// queues its calls, and its own subscription for their answers.
type durableClient struct {
	js      jetstream.JetStream
	subject string
	header  string // the header that says where to answer
	value   string
	answers *nats.Subscription
}

// durableClients subscribes c clients of path for their answers (before the
// cell's clock starts) and returns them with a function that unsubscribes
// them. Each cell gets new answer subjects, so a late answer from an earlier
// cell cannot be taken for one of this cell's.
func (b *benchEnv) durableClients(path, tag string, c int) ([]*durableClient, func(), error) {
	var out []*durableClient
	stop := func() {
		for _, dc := range out {
			_ = dc.answers.Unsubscribe()
		}
	}
	conns := b.bareCli
	if path == "sqlgate" {
		conns = b.users
	}
	for i := range c {
		nc := conns[i%len(conns)]
		js, err := jetstream.New(nc)
		if err != nil {
			stop()
			return nil, nil, err
		}
		token := tag + "-c" + strconv.Itoa(i)
		dc := &durableClient{js: js, subject: bareAsyncSubject, header: bareReplyHeader, value: bareReplyPrefix + token}
		answerSubject := dc.value
		if path == "sqlgate" {
			key := b.userKeys[i%len(conns)]
			dc.subject = broker.AsyncSubjectPrefix + key + "." + benchAsyncSubject
			dc.header, dc.value = natsvc.HeaderReplyTo, token
			answerSubject = broker.ReplyPrefix(key) + "." + token
		}
		if dc.answers, err = nc.SubscribeSync(answerSubject); err != nil {
			stop()
			return nil, nil, err
		}
		out = append(out, dc)
	}
	for _, nc := range conns {
		if err := nc.Flush(); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return out, stop, nil
}

// loadDurable runs c closed-loop clients of the durable path for d.
func (b *benchEnv) loadDurable(ctx context.Context, path string, c int, d time.Duration, tag string) ([]time.Duration, cellErrors, error) {
	clients, stop, err := b.durableClients(path, tag, c)
	if err != nil {
		return nil, cellErrors{}, err
	}
	defer stop()
	return load(ctx, c, d, tag, func(i int, n int64) error { return clients[i].call(ctx, tag, n) })
}

// call queues request n of a cell, waits for the stream to store it, then
// for its answer, and checks that the answer is a success for this request.
func (dc *durableClient) call(ctx context.Context, tag string, n int64) error {
	id := tag + "-" + strconv.FormatInt(n, 10)
	m := nats.NewMsg(dc.subject)
	m.Data = []byte(`{"customer":"` + id + `","amount":10.50}`)
	m.Header.Set(natsvc.HeaderIdempotencyKey, id)
	m.Header.Set(natsvc.HeaderCorrelationID, id)
	m.Header.Set(dc.header, dc.value)
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := dc.js.PublishMsg(qctx, m); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	answer, err := dc.answers.NextMsgWithContext(qctx)
	switch {
	case err != nil:
		return fmt.Errorf("answer: %w", err)
	case !bytes.HasPrefix(answer.Data, []byte(`{"ok":true`)):
		return errors.New(string(answer.Data))
	case !bytes.Contains(answer.Data, []byte(`"correlation_id":"`+id+`"`)):
		return fmt.Errorf("answer for another request: %s", answer.Data)
	}
	return nil
}
