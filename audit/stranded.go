package audit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlgate/sqlgate/internal/logsample"
)

// A call's intent is durable before its SQL runs; its outcome is appended
// after, without the caller waiting ([Log.Enqueue]). When that append fails
// (the store refused or timed out, the claim on the origin was lost), or an
// intent is stored although its caller was told the append failed, the
// intent has no outcome, and nothing in this process would write one: the
// start's recovery ([Log.Unpaired]) is for intents of earlier runs. The log
// keeps such intents, and [Log.Stranded] hands them out for recovery while
// it runs.

// maxStranded bounds the intents a Log keeps for [Log.Stranded]; past it an
// intent is only counted and logged (see strandDropLogEvery), and the next
// start's recovery writes its outcome.
const maxStranded = 1 << 16

// strandDropLogEvery is the least time between two log lines about intents
// not kept past maxStranded: a store outage under load drops one intent per
// call, and one line per intent would flood the log. Each line carries the
// total dropped and how many were dropped since the line before.
const strandDropLogEvery = 10 * time.Second

// States of an [appendReq] with a waiter.
const (
	reqWaiting int32 = iota
	reqAnswered
	reqAbandoned
)

// strandPending marks a stranded intent whose outcome append is under way,
// its fate unknown: it is not due until the append's answer says.
const strandPending = math.MaxInt64

// strandBook holds the stranded intents: intent index -> the settled count
// (see Log.settled) from which it is due. An outcome reported failed may be
// stored all the same (a commit whose answer was lost); the log knows only
// once it has read the store again, the next settled commit.
type strandBook struct {
	mu sync.Mutex
	m  map[int64]int64
	n  atomic.Int64 // len(m), read without mu
	// limit bounds len(m): maxStranded when 0 (the package's tests set
	// less).
	limit int
	// dropped counts the intents not kept because m was full (read
	// without mu); dropLog lets one line about them through per
	// strandDropLogEvery.
	dropped atomic.Int64
	dropLog logsample.Sampler
}

// strandAt records intent idx as stranded, due from the settled count from
// (replacing what was recorded).
func (l *Log) strandAt(idx, from int64) {
	l.strand.mu.Lock()
	defer l.strand.mu.Unlock()
	l.strandLocked(idx, from)
}

func (l *Log) strandLocked(idx, from int64) {
	if idx <= 0 {
		return // record 0 starts the log: never an intent
	}
	b := &l.strand
	limit := b.limit
	if limit == 0 {
		limit = maxStranded
	}
	if _, ok := b.m[idx]; !ok && len(b.m) >= limit {
		l.dropStrandedLocked(idx, limit)
		return
	}
	if b.m == nil {
		b.m = map[int64]int64{}
	}
	b.m[idx] = from
	b.n.Store(int64(len(b.m)))
}

// dropStrandedLocked counts intent idx as not kept (the book holds limit
// intents) and logs it, unless a line was logged less than
// strandDropLogEvery ago: then the next line counts it as suppressed.
func (l *Log) dropStrandedLocked(idx int64, limit int) {
	b := &l.strand
	dropped := b.dropped.Add(1)
	ok, suppressed := b.dropLog.Allow(l.cfg.Now(), strandDropLogEvery)
	if !ok {
		return
	}
	l.log.ErrorContext(context.Background(), "audit intents without an outcome not kept for recovery while running; the next start recovers them",
		"origin", l.cfg.Origin, "intent_index", idx, "kept", limit, "dropped", dropped, "suppressed", suppressed)
}

// outcomeLost strands the intent of r when r is an outcome whose append
// failed: due once the log has read the store again.
func (l *Log) outcomeLost(r *Record) {
	if r.Kind == KindOutcome {
		l.strandAt(r.IntentIndex, l.settled.Load()+1)
	}
}

// notQueued strands the intent of r when r is an outcome that never
// reached the queue (nothing of it can be stored): due at once.
func (l *Log) notQueued(r *Record) {
	if r.Kind == KindOutcome {
		l.strandAt(r.IntentIndex, l.settled.Load())
	}
}

// answered keeps the books of a waiter's request right before its answer
// err: an outcome that failed strands its intent and one that is stored
// settles it; an intent stored after its waiter gave up is stranded (its
// caller was told the append failed, so it performs nothing and appends no
// outcome).
func (l *Log) answered(req *appendReq, err error) {
	r := req.rec
	switch r.Kind {
	case KindOutcome:
		l.strand.mu.Lock()
		defer l.strand.mu.Unlock()
		req.state.Store(reqAnswered)
		if err != nil {
			l.strandLocked(r.IntentIndex, l.settled.Load()+1)
		} else if _, ok := l.strand.m[r.IntentIndex]; ok {
			delete(l.strand.m, r.IntentIndex)
			l.strand.n.Store(int64(len(l.strand.m)))
		}
	case KindIntent:
		if !req.state.CompareAndSwap(reqWaiting, reqAnswered) && err == nil {
			l.strandAt(r.Index, l.settled.Load())
		}
	default:
		req.state.Store(reqAnswered)
	}
}

// abandon marks req (whose record is r) given up by its waiter, or reports
// false when the committer answered it first. An outcome given up may still
// be stored or fail: its intent is not due until then.
func (l *Log) abandon(req *appendReq, r *Record) bool {
	if r.Kind != KindOutcome {
		return req.state.CompareAndSwap(reqWaiting, reqAbandoned)
	}
	l.strand.mu.Lock()
	defer l.strand.mu.Unlock()
	if !req.state.CompareAndSwap(reqWaiting, reqAbandoned) {
		return false
	}
	l.strandLocked(r.IntentIndex, strandPending)
	return true
}

// Stranded returns the intents this process appended that have no outcome
// although no call of this process will append one any more, oldest first,
// for the caller to recover while the log runs as after a crash (see
// [Log.Unpaired]): look each one up and append the missing outcome with
// Result.Recovered set and IntentIndex pointing at it. They are the intents
//   - whose outcome's append failed ([Log.Enqueue]'s callback or error,
//     [Log.Append]'s error), or
//   - that are stored although their append was reported failed (its batch
//     failed after all was written, or its caller gave up waiting), so
//     their call did not run.
//
// An intent is never returned while its call runs, nor while its outcome
// could be stored: a write reported failed may have been stored all the
// same, so an intent is returned only once the log has read the store again
// after the failure (a later write or reload succeeded), and only while the
// store lists it without an outcome; one whose outcome is found stored is
// forgotten. An intent stays stranded until an outcome for it is stored
// through this log, so it is returned again by later calls until then: the
// caller must not append outcomes for one intent concurrently. At most
// 65536 intents are kept: any more are counted and logged (a line at most
// every 10 s, with the number dropped since the line before), and the next
// start's recovery writes their outcomes.
func (l *Log) Stranded(ctx context.Context) ([]Record, error) {
	if l.strand.n.Load() == 0 {
		return nil, nil
	}
	settled := l.settled.Load()
	b := &l.strand
	b.mu.Lock()
	due := map[int64]int64{}
	for idx, from := range b.m {
		if from <= settled {
			due[idx] = from
		}
	}
	b.mu.Unlock()
	if len(due) == 0 {
		return nil, nil
	}
	size := l.tree.Load().size
	open, err := l.Unpaired(ctx)
	if err != nil {
		return nil, fmt.Errorf("stranded intents: %w", err)
	}
	var out []Record
	for _, r := range open {
		if _, ok := due[r.Index]; ok {
			out = append(out, r)
			delete(due, r.Index)
		}
	}
	// The rest are stored with an outcome: forget them (unless they were
	// stranded again meanwhile).
	b.mu.Lock()
	defer b.mu.Unlock()
	for idx, from := range due {
		if cur, ok := b.m[idx]; ok && cur == from && idx < size {
			delete(b.m, idx)
		}
	}
	b.n.Store(int64(len(b.m)))
	return out, nil
}
