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
// message so that errors never carry them upward: every occurrence of a
// value of three or more characters is replaced, shorter values only where
// they stand as a whole word. The result is truncated to maxMessage bytes.
// c may be nil (no call: only truncation).
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
		for _, v := range vals {
			msg = Redact(msg, v)
		}
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return msg
}

const redacted = "[redacted]"

// Redact replaces v in msg: every occurrence when v has three or more
// characters, else only where it stands as a whole word.
func Redact(msg, v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return msg
	}
	if len(v) >= 3 {
		return strings.ReplaceAll(msg, v, redacted)
	}
	var b strings.Builder
	for i := 0; i < len(msg); {
		j := strings.Index(msg[i:], v)
		if j < 0 {
			b.WriteString(msg[i:])
			break
		}
		j += i
		end := j + len(v)
		if (j == 0 || !isWord(msg[j-1])) && (end == len(msg) || !isWord(msg[end])) {
			b.WriteString(msg[i:j])
			b.WriteString(redacted)
		} else {
			b.WriteString(msg[i:end])
		}
		i = end
	}
	return b.String()
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80
}
