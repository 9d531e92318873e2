package natsvc

import (
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/internal/header"
)

// TestMsgIDKey: a Nats-Msg-Id that is a valid idempotency key is the key as
// it is (keys stored before stay the same); any other is a valid key
// derived from it, the same for the same id and another for another.
func TestMsgIDKey(t *testing.T) {
	for _, id := range []string{"", "msg-9", strings.Repeat("k", 256)} {
		if got := msgIDKey(id); got != id {
			t.Errorf("msgIDKey(%q) = %q, want it as it is", id, got)
		}
	}
	seen := map[string]string{}
	for _, id := range []string{"has space", "tab\there", "é", strings.Repeat("k", 257), strings.Repeat("k", 4096)} {
		k := msgIDKey(id)
		if !header.Valid(k, header.MaxIdempotencyKey) || !strings.HasPrefix(k, msgIDKeyPrefix) || k != msgIDKey(id) {
			t.Errorf("msgIDKey(%q) = %q, want a valid key derived from it, the same every time", id, k)
		}
		if other, ok := seen[k]; ok {
			t.Errorf("%q and %q have one key %q", id, other, k)
		}
		seen[k] = id
	}
}
