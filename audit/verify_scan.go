package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// The record scan of Verify is a pipeline: the source is read on one
// goroutine into chunks, workers decode and hash chunks in parallel, and
// the scan folds the results in index order.

const chunkSize = 256

// oversizedMarker starts the data a [Bundle] passes for a record line it
// did not read because it is longer than its line limit: then a flag (1:
// the leaf hash of the record follows, computed while skipping the line),
// the 32-byte leaf hash and the line's length in decimal. No canonical
// record starts with a NUL byte, so the marker is never a valid record.
const oversizedMarker = "\x00sqlgate: oversized bundle line\x00"

func appendOversized(dst []byte, n int64, leaf tlog.Hash, ok bool) []byte {
	dst = append(dst, oversizedMarker...)
	flag := byte('0')
	if ok {
		flag = '1'
	}
	dst = append(dst, flag)
	dst = append(dst, leaf[:]...)
	return strconv.AppendInt(dst, n, 10)
}

// parseOversized decodes what appendOversized wrote.
func parseOversized(data []byte) (n int64, leaf tlog.Hash, ok, is bool) {
	rest, found := bytes.CutPrefix(data, []byte(oversizedMarker))
	if !found || len(rest) < 1+tlog.HashSize+1 || rest[0] != '0' && rest[0] != '1' {
		return 0, leaf, false, false
	}
	copy(leaf[:], rest[1:1+tlog.HashSize])
	n, err := strconv.ParseInt(string(rest[1+tlog.HashSize:]), 10, 64)
	if err != nil || n <= maxBundleLine {
		return 0, leaf, false, false
	}
	return n, leaf, rest[0] == '1', true
}

// malformedMarker starts the data a [Bundle] passes for a line in the place
// of a record that is not a record line (cut off, blank, garbage): then
// what is wrong with it, naming the line. Like oversizedMarker, it is
// never a valid record.
const malformedMarker = "\x00sqlgate: malformed bundle line\x00"

func appendMalformed(dst []byte, why string) []byte {
	return append(append(dst, malformedMarker...), why...)
}

// recInfo is what the scan needs from a decoded record.
type recInfo struct {
	code   ProblemCode // set when the record is bad
	goOn   bool        // the bad record's leaf is known: the scan goes on
	msg    string
	kind   Kind
	intent int64
	time   time.Time
	link   linkSum // intents and outcomes
	// rotAction and rotKey are set for a log_start or key_rotation
	// record: its action and the id of the key it names.
	rotAction, rotKey string
}

// linkFields are the fields an outcome repeats from its intent: they tie a
// routed call to its SQL transaction. An outcome that differs from its
// intent in any of them is a falsified link (an intent edited while crash
// recovery read it, then restored).
var linkFields = [...]string{"correlation_id", "idempotency_key", "route", "target_kind", "target", "sql.server", "sql.database"}

// linkSum is what the scan keeps per open intent to compare its outcome:
// a 128-bit SHA-256 prefix over the link fields decides; short per-field
// fingerprints only name the field that differs.
type linkSum struct {
	all   [16]byte
	field [len(linkFields)]uint32
}

// linkOf returns the link sum of r, reusing buf.
func linkOf(r *Record, buf []byte) (linkSum, []byte) {
	var server, database string
	if r.SQL != nil {
		server, database = r.SQL.Server, r.SQL.Database
	}
	vals := [len(linkFields)]string{r.CorrelationID, r.IdempotencyKey, r.Route, r.TargetKind, r.Target, server, database}
	var out linkSum
	buf = buf[:0]
	for i, v := range vals {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
		h := uint32(2166136261) // FNV-1a
		for k := 0; k < len(v); k++ {
			h = (h ^ uint32(v[k])) * 16777619
		}
		out.field[i] = h
	}
	sum := sha256.Sum256(buf)
	copy(out.all[:], sum[:])
	return out, buf
}

// differs names the link fields in which b differs from a ("" when equal).
func (a *linkSum) differs(b *linkSum) string {
	if a.all == b.all {
		return ""
	}
	var names []string
	for i := range a.field {
		if a.field[i] != b.field[i] {
			names = append(names, linkFields[i])
		}
	}
	if len(names) == 0 {
		return "one of " + strings.Join(linkFields[:], ", ")
	}
	return strings.Join(names, ", ")
}

type chunk struct {
	base      int64 // position of the first record
	n         int
	srcIdx    [chunkSize]int64
	offs      [chunkSize + 1]int
	data      []byte
	stored    [chunkSize]tlog.Hash
	hasStored [chunkSize]bool
	leaf      [chunkSize]tlog.Hash
	info      [chunkSize]recInfo
	done      chan struct{}
}

func (c *chunk) reset(base int64) {
	c.base, c.n, c.data = base, 0, c.data[:0]
	c.offs[0] = 0
	c.done = make(chan struct{})
}

// records scans positions [from, to).
func (s *scan) records(ctx context.Context, from, to int64) error {
	if from >= to {
		return nil
	}
	v := s.v
	origin := v.or.Origin
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := v.opts.Workers
	work := make(chan *chunk, 2*workers)
	ordered := make(chan *chunk, 4*workers)
	if s.w.free == nil { // kept from one window of checkpoints to the next
		s.w.free = make(chan *chunk, 4*workers+2)
	}
	free := s.w.free

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			d := recordDecoder{spare: &spare{}}
			var h leafHasher
			for c := range work {
				c.process(&d, &h, origin)
				close(c.done)
			}
		})
	}

	var srcErr error
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		defer close(ordered)
		defer close(work)
		send := func(c *chunk) bool {
			select {
			case work <- c:
			case <-ctx.Done():
				return false
			}
			select {
			case ordered <- c:
				return true
			case <-ctx.Done():
				return false
			}
		}
		get := func(base int64) *chunk {
			var c *chunk
			select {
			case c = <-free:
			default:
				c = &chunk{data: make([]byte, 0, chunkSize*600)}
			}
			c.reset(base)
			return c
		}
		cur := get(from)
		srcErr = v.src.Records(ctx, origin, from, to, func(index int64, data []byte, leaf *tlog.Hash) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			i := cur.n
			cur.srcIdx[i] = index
			cur.data = append(cur.data, data...)
			cur.offs[i+1] = len(cur.data)
			cur.hasStored[i] = leaf != nil
			if leaf != nil {
				cur.stored[i] = *leaf
			}
			cur.n++
			if cur.n == chunkSize {
				if !send(cur) {
					return ctx.Err()
				}
				cur = get(cur.base + chunkSize)
			}
			return nil
		})
		if srcErr == nil && cur.n > 0 {
			send(cur)
		}
	}()

	for c := range ordered {
		if s.stopped {
			continue // drain
		}
		<-c.done
		s.fold(c)
		if s.stopped {
			cancel()
			continue
		}
		select {
		case free <- c:
		default:
		}
	}
	<-prodDone
	wg.Wait()
	if s.stopped {
		return nil
	}
	return srcErr
}

// process decodes and hashes the records of c (on a worker).
func (c *chunk) process(d *recordDecoder, h *leafHasher, origin string) {
	var r Record
	var buf []byte
	for i := 0; i < c.n; i++ {
		data := c.data[c.offs[i]:c.offs[i+1]]
		p := c.base + int64(i)
		info := &c.info[i]
		*info = recInfo{}
		if n, leaf, ok, is := parseOversized(data); is {
			info.code = ProblemBadRecord
			info.msg = fmt.Sprintf("the record's line in the bundle is %d bytes, over the %d-byte line limit: not read", n, maxBundleLine)
			c.leaf[i] = leaf
			switch {
			case !ok:
				info.msg += " (and it is not a record line)"
			case c.hasStored[i] && c.stored[i] != leaf:
				info.msg += " (and its bytes do not match the stored leaf hash)"
			default:
				info.goOn = true // the tree and the records after it are still checked
			}
			continue
		}
		c.leaf[i] = h.sum(data)
		if why, ok := bytes.CutPrefix(data, []byte(malformedMarker)); ok {
			info.code, info.msg = ProblemBadRecord, string(why)
			continue
		}
		if err := d.decode(&r, data); err != nil {
			info.code, info.msg = ProblemBadRecord, err.Error()
			continue
		}
		switch {
		case c.hasStored[i] && c.stored[i] != c.leaf[i]:
			info.code, info.msg = ProblemLeafMismatch, "record bytes do not match the stored leaf hash (record or hash altered)"
		case r.Index != p:
			info.code, info.msg = ProblemIndexMismatch, fmt.Sprintf("the record at position %d says it is index %d (records deleted, inserted or reordered)", p, r.Index)
		case r.Origin != origin:
			info.code, info.msg = ProblemWrongOrigin, fmt.Sprintf("record names origin %q", r.Origin)
		}
		info.kind, info.intent, info.time = r.Kind, r.IntentIndex, r.Time
		if r.Kind == KindIntent || r.Kind == KindOutcome {
			info.link, buf = linkOf(&r, buf)
		}
		if a := r.Admin; r.Kind == KindAdmin && a != nil && (a.Action == AdminLogStart || a.Action == AdminKeyRotation) {
			info.rotAction, info.rotKey = a.Action, keyID(strings.TrimSpace(a.Detail))
		}
	}
}

// fold applies the results of c in order.
func (s *scan) fold(c *chunk) {
	v := s.v
	for i := 0; i < c.n; i++ {
		p := c.base + int64(i)
		if idx := c.srcIdx[i]; idx != p {
			if idx > p {
				v.fail(ProblemMissingRecord, p, 0, fmt.Sprintf("record %d is missing (the next stored record is %d)", p, idx))
			} else {
				v.fail(ProblemIndexMismatch, p, 0, fmt.Sprintf("the source returned index %d again or out of order at position %d", idx, p))
			}
			s.stopped = true
			return
		}
		info := &c.info[i]
		if p >= s.lo && info.code != "" {
			v.fail(info.code, p, 0, info.msg)
			if !info.goOn {
				s.stopped = true
				return
			}
		}
		s.front.append(c.leaf[i])
		if info.code == "" && info.rotKey != "" {
			s.rotated(p, info.rotAction, info.rotKey)
		}
		switch {
		case p < s.lo:
		case info.code != "":
			v.or.Records++ // counted, not read
		default:
			s.record(p, info)
		}
		if s.next < len(s.due) && s.cp(&s.due[s.next]).Size <= p+1 {
			s.checkDue()
			if s.stopped {
				return
			}
		}
	}
}
