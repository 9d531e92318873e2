package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
)

// AppendLegacyInput appends r with a decision input the way versions before
// input_hmac did: input_sha256 is the input's plain SHA-256. Tests use it to
// check that such records still verify and replay.
func (l *Log) AppendLegacyInput(ctx context.Context, r *Record, input []byte) (int64, error) {
	sum := sha256.Sum256(input)
	r.InputHMAC, r.InputSHA256 = "", hex.EncodeToString(sum[:])
	return l.append(ctx, r, input)
}
