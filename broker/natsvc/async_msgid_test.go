package natsvc_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// TestAsyncMsgIDThatIsNoKey: a message without Idempotency-Key whose
// Nats-Msg-Id is not a valid key (a space, longer than 256 bytes) runs:
// its key is derived from the id, so a message sent again with the same id
// replays the first instead of running twice. (Before, the broker refused
// it as invalid_request, "Idempotency-Key must be ...", about a header the
// sender never set, and the message was acknowledged unexecuted.)
func TestAsyncMsgIDThatIsNoKey(t *testing.T) {
	e := openJobs(t)
	h, _ := jobsBroker(t, e)
	f := newAsyncFixture(t)
	f.start(t.Context(), t, h)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"

	spaced := "import 2026-11 line 1"
	ack := f.publish(t, subject, `{"name":"a"}`, map[string]string{natsvc.HeaderMsgID: spaced})
	f.settled(t, ack.Sequence)
	// The same message again, once the stream's duplicate window (100 ms)
	// no longer drops it: the same key, so a replay.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ack = f.publish(t, subject, `{"name":"a"}`, map[string]string{natsvc.HeaderMsgID: spaced})
		if !ack.Duplicate {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream keeps dropping the message as a duplicate")
		}
	}
	f.settled(t, ack.Sequence)
	ack = f.publish(t, subject, `{"name":"b"}`, map[string]string{natsvc.HeaderMsgID: strings.Repeat("m", 300)})
	f.settled(t, ack.Sequence)

	if got, want := f.settledCounts(), map[string]int{natsvc.SettledOK: 3}; !maps.Equal(got, want) {
		t.Errorf("settled %v, want %v (each ran, the second a as a replay of the first)", got, want)
	}
	if got, want := jobNames(t, e), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}
