// Package scrub removes a call's parameter and session values from database
// messages, so that the SQL adapters' errors never carry them upward.
package scrub

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sqlgate/sqlgate/broker"
)

// maxMessage bounds a database message passed to callers.
const maxMessage = 512

// Message removes the call's parameter and session values from a database
// message so that errors never carry them upward (see [Redact]). The result
// is truncated to maxMessage bytes. c may be nil (no call: only truncation).
func Message(msg string, c *broker.Call) string {
	if c != nil {
		vals := []string{c.CorrelationID, c.Principal, c.DecisionID, c.IdempotencyKey}
		for _, v := range c.Params {
			switch x := v.(type) {
			case string:
				vals = append(vals, x)
			case json.Number:
				vals = append(vals, string(x))
			case nil:
			default:
				vals = append(vals, fmt.Sprint(x))
			}
		}
		msg = Redact(msg, vals...)
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return msg
}

const redacted = "[redacted]"

// Redact replaces every occurrence of the values in msg: anywhere for a
// value of three or more characters (after trimming spaces), only where it
// stands as a whole word for a shorter one. The occurrences are all found
// in the original message first and replaced together, one marker per run
// of covered bytes, so the result does not depend on the values' order: a
// value inside or overlapping another (a principal quoted within a
// parameter) cannot leave the rest of the longer one visible.
func Redact(msg string, vals ...string) string {
	var covered []bool
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		for i := 0; i < len(msg); {
			j := strings.Index(msg[i:], v)
			if j < 0 {
				break
			}
			j += i
			end := j + len(v)
			if len(v) >= 3 || (j == 0 || !isWord(msg[j-1])) && (end == len(msg) || !isWord(msg[end])) {
				if covered == nil {
					covered = make([]bool, len(msg))
				}
				for k := j; k < end; k++ {
					covered[k] = true
				}
			}
			i = j + 1 // occurrences may overlap ("aa" in "aaa")
		}
	}
	if covered == nil {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		switch {
		case !covered[i]:
			b.WriteByte(msg[i])
		case i == 0 || !covered[i-1]:
			b.WriteString(redacted)
		}
	}
	return b.String()
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80
}
