package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestHeadMACGolden pins the head MAC's bytes (stored heads are checked
// against it at every open): values computed by the first implementation.
// The message buffer is reused across calls.
func TestHeadMACGolden(t *testing.T) {
	m := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
	var root tlog.Hash
	for i := range root {
		root[i] = byte(i)
	}
	var msg []byte
	for range 2 {
		if got := hex.EncodeToString(headMAC(m, nil, &msg, "sqlgate.test/origin", 1234567, root)); got != "ab1b502e2897a4c8d593a5999c417506ef3d87bfc1e1e158c55fe7fec8d1ec42" {
			t.Errorf("headMAC = %s", got)
		}
		if got := hex.EncodeToString(headMAC(m, []byte("x"), &msg, "", 0, tlog.Hash{})); got != "78fdb234b063bb19c941407269648a62c72d63f7cfa947d3031a07bd1afe0cf03d" {
			t.Errorf("headMAC appended to x = %s", got)
		}
	}
}
