package audit

import "bytes"

// rotationsExtension is the checkpoint extension line (C2SP
// tlog-checkpoint; readers ignore extension lines they do not know, as
// every earlier sqlgate does) with which the log says that it records every
// change of its signing key: it writes a "key_rotation" record whenever it
// signs with a key other than the one of its latest checkpoint, going back
// to an earlier key included. Versions up to e8247d9 did not write it, and
// wrote "key_rotation" only for a key new to the key history, so in their
// logs a checkpoint signed by an earlier key after a rotation record is
// legitimate (a rollback of a key rotation) and cannot be told from a
// retired key re-signing.
//
// The retired-key rule ([ProblemRetiredKey], and [Open] at a key change)
// therefore applies from the first checkpoint that carries the line: from
// its size on, a checkpoint must be signed by the key that the last
// "log_start" or "key_rotation" record names, or, before any such record
// after it, by that first checkpoint's own key (an upgraded log that an
// earlier version had taken back to an earlier key names that key no other
// way). Checkpoints are never pruned, so the rule holds however much of the
// log retention removed.
const rotationsExtension = "rotations recorded"

// recordsRotations reports whether the signed checkpoint note msg carries
// [rotationsExtension] (it does not check the note).
func recordsRotations(msg []byte) bool {
	text := noteText(msg)
	for range 3 { // origin, size, root hash
		_, rest, ok := bytes.Cut(text, []byte("\n"))
		if !ok {
			return false
		}
		text = rest
	}
	for len(text) > 0 {
		line, rest, _ := bytes.Cut(text, []byte("\n"))
		if string(line) == rotationsExtension {
			return true
		}
		text = rest
	}
	return false
}
