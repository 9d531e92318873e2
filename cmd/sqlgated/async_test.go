package main

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/broker/route"
)

// TestDevAsync runs the demo's durable async route, orders.v1.import, over
// the real stack: a user
// publishes under its own key, the stream acknowledges, sqlgated consumes,
// decides, runs the call in one transaction and emits after commit; a
// redelivered key executes nothing, another user's key is refused by the
// NATS server, and a denied request is settled without running.
func TestDevAsync(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dev stack: skipped with -short")
	}
	s := startDev(t, t.TempDir())
	alice, _ := s.login(t, "alice")
	nc, cred, _ := s.natsUser(t, alice, 0)
	key := userKeyOf(t, cred.JWT)

	bc, events := s.brokerEvents(t, "orders.v1.imported")
	js, err := jetstream.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	// A batched call may take three route timeouts (the batch ahead, the
	// batch, the call alone): JetStream must not deliver it again meanwhile.
	if c, err := js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable); err != nil {
		t.Fatal(err)
	} else if info, err := c.Info(t.Context()); err != nil {
		t.Fatal(err)
	} else if least := 3*route.DefaultTimeout + 30*time.Second; info.Config.AckWait < least {
		t.Errorf("async ack wait %s, want at least %s for orders.v1.import (batch: 16, timeout %s)", info.Config.AckWait, least, route.DefaultTimeout)
	}
	// settled waits until the consumer acknowledged stream sequence seq.
	settled := func(seq uint64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			c, err := js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
			if err == nil {
				if info, err := c.Info(t.Context()); err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream sequence %d was not settled", seq)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	publish := func(conn *nats.Conn, userKey, payload string, headers map[string]string) (jetstream.PubAck, error) {
		t.Helper()
		m := nats.NewMsg(broker.AsyncPrefix(userKey) + ".orders.v1.import")
		m.Data = []byte(payload)
		for k, v := range headers {
			m.Header.Set(k, v)
		}
		reply, err := conn.RequestMsg(m, 5*time.Second)
		if err != nil {
			return jetstream.PubAck{}, err
		}
		var ack jetstream.PubAck
		if err := json.Unmarshal(reply.Data, &ack); err != nil || ack.Stream == "" {
			t.Fatalf("publish ack %q: %v", reply.Data, err)
		}
		return ack, nil
	}

	payload := `{"customer":"queued","amount":42}`
	ack, err := publish(nc, key, payload, map[string]string{"Idempotency-Key": "import-1", "Correlation-Id": "corr-async-1"})
	if err != nil || ack.Stream != natsvc.DefaultAsyncStream {
		t.Fatalf("publish = %+v, %v", ack, err)
	}
	ev, err := events.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no emit event after the async call: %v", err)
	}
	var event struct {
		CorrelationID string          `json:"correlation_id"`
		Principal     string          `json:"principal"`
		Result        json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(ev.Data, &event); err != nil || event.CorrelationID != "corr-async-1" || event.Principal != "alice@example.com" {
		t.Fatalf("emit event = %s, %v", ev.Data, err)
	}
	var result struct {
		Rows []struct {
			ID int64 `json:"id"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(event.Result, &result); err != nil || len(result.Rows) != 1 {
		t.Fatalf("event result = %s, %v", event.Result, err)
	}
	id := result.Rows[0].ID
	got, _ := request(t, nc, "orders.v1.get", `{"id":`+strconv.FormatInt(id, 10)+`}`, nil)
	if row := rows(t, got); len(row) != 1 || row[0]["customer"] != "queued" || row[0]["created_by"] != "alice@example.com" || row[0]["correlation_id"] != "corr-async-1" {
		t.Fatalf("the async order = %+v", got)
	}
	settled(ack.Sequence)

	// Published again with the same key: settled, executed nothing, no event.
	again, err := publish(nc, key, payload, map[string]string{"Idempotency-Key": "import-1", "Correlation-Id": "corr-async-2"})
	if err != nil {
		t.Fatal(err)
	}
	settled(again.Sequence)
	if m, err := events.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("a replayed async request emitted %s", m.Data)
	}
	if next, _ := request(t, nc, "orders.v1.get", `{"id":`+strconv.FormatInt(id+1, 10)+`}`, nil); len(rows(t, next)) != 0 {
		t.Errorf("the replayed key created another order: %+v", next)
	}
	// The stored result is what a synchronous call with the key returns.
	replay, _ := request(t, nc, "orders.v1.import", payload, map[string]string{"Idempotency-Key": "import-1"})
	if !replay.OK || !replay.Replayed {
		t.Errorf("sync replay of the async key = %+v", replay)
	}

	// Over the policy's limit: settled, refused, never run.
	denied, err := publish(nc, key, `{"customer":"too big","amount":5000}`, map[string]string{"Correlation-Id": "corr-async-3"})
	if err != nil {
		t.Fatal(err)
	}
	settled(denied.Sequence)
	if m, err := events.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("a denied async request emitted %s", m.Data)
	}
	if next, _ := request(t, nc, "orders.v1.get", `{"id":`+strconv.FormatInt(id+1, 10)+`}`, nil); len(rows(t, next)) != 0 {
		t.Errorf("the denied request created an order: %+v", next)
	}

	// Asked for: the answer comes under alice's own reply prefix, which her
	// credential may read (and no one else's).
	uc, err := jwt.DecodeUserClaims(cred.JWT)
	if err != nil {
		t.Fatal(err)
	}
	// Besides them, only the events policy grants sales.
	want := []string{cred.InboxPrefix + ".>", broker.ReplyPrefix(key) + ".>", "orders.v1.cancelled", "orders.v1.created", "orders.v1.imported"}
	if got := slices.Sorted(slices.Values(uc.Sub.Allow)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("credential may subscribe to %v, want its inbox, its own reply prefix and the granted events %v", got, want)
	}
	replies, err := nc.SubscribeSync(broker.ReplyPrefix(key) + ".job-7")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := publish(nc, key, `{"customer":"answered","amount":7}`, map[string]string{"Sqlgate-Reply-To": "job-7", "Correlation-Id": "corr-async-4"}); err != nil {
		t.Fatal(err)
	}
	answer, err := replies.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no answer to the async call: %v", err)
	}
	var env envelope
	if err := json.Unmarshal(answer.Data, &env); err != nil || !env.OK || env.CorrelationID != "corr-async-4" || len(rows(t, env)) != 1 {
		t.Errorf("answer = %s", answer.Data)
	}

	// The deliveries are counted for operators.
	resp, err := http.Get(s.st.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// The calls came one at a time, so each ran in a transaction of its
	// own: four batches of one call (three queued, and the direct replay,
	// which goes through the route's batcher too), none fell back.
	for _, want := range []string{
		`sqlgate_async_messages_total{settled="ok"} 3`, `sqlgate_async_messages_total{settled="final"} 1`,
		`sqlgate_batch_calls_sum{route="orders.v1.import"} 4`, `sqlgate_batch_calls_count{route="orders.v1.import"} 4`,
		"sqlgate_async_stream_ok 1",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s\n%s", want, metrics)
		}
	}

	// Under another user's key: the NATS server refuses the publish.
	bob, _ := s.login(t, "bob")
	_, bobCred, _ := s.natsUser(t, bob, 0)
	if _, err := publish(nc, userKeyOf(t, bobCred.JWT), payload, nil); err == nil {
		t.Error("alice published under bob's key")
	}
}
