package oidc

import (
	"container/heap"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// maxUsedStates bounds the states [WebLogin] remembers to accept each one
// once: a state stays until its login cookie expires (MaxAge, 10 minutes by
// default), so this is 100,000 sign-ins completed or attempted within that
// time, about 10 MB. Anyone can start a sign-in and present its state at the
// callback, so the bound is what keeps memory finite; when it is reached,
// sign-ins are refused with [ErrTooManyLogins] until states expire.
const maxUsedStates = 100_000

// errStateUsed means a state was presented at the callback before.
var errStateUsed = errors.New("this sign-in was already completed")

// usedStates is the set of states already presented at the callback, each
// kept until the instant its login cookie is no longer accepted. Expired
// states leave from the front of a heap ordered by expiry, so a call costs
// O(log n) plus the states it drops, never a scan of the set. Safe for
// concurrent use.
type usedStates struct {
	mu    sync.Mutex
	max   int
	seen  map[[sha256.Size]byte]struct{}
	order stateHeap
}

func newUsedStates(limit int) *usedStates {
	return &usedStates{max: limit, seen: map[[sha256.Size]byte]struct{}{}}
}

// sweep drops the states that expired at now. The caller holds mu.
func (u *usedStates) sweep(now time.Time) {
	for len(u.order) > 0 && !now.Before(u.order[0].until) {
		e := heap.Pop(&u.order).(usedState)
		delete(u.seen, e.key)
	}
}

// full reports whether no further state can be remembered now.
func (u *usedStates) full(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	return len(u.seen) >= u.max
}

// has reports whether state is remembered as used now.
func (u *usedStates) has(state string, now time.Time) bool {
	key := sha256.Sum256([]byte(state))
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	_, used := u.seen[key]
	return used
}

// use records state as used until until. It returns errStateUsed if the
// state was used before, and [ErrTooManyLogins] if the set is full (the state
// is then not accepted: without a record it could be replayed).
func (u *usedStates) use(state string, until, now time.Time) error {
	key := sha256.Sum256([]byte(state))
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	if _, used := u.seen[key]; used {
		return errStateUsed
	}
	if len(u.seen) >= u.max {
		return ErrTooManyLogins
	}
	u.seen[key] = struct{}{}
	heap.Push(&u.order, usedState{key: key, until: until})
	return nil
}

// size is the number of states remembered.
func (u *usedStates) size() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

type usedState struct {
	key   [sha256.Size]byte
	until time.Time
}

// stateHeap is a min-heap of used states by expiry ([container/heap]).
type stateHeap []usedState

func (h stateHeap) Len() int           { return len(h) }
func (h stateHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h stateHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *stateHeap) Push(x any)        { *h = append(*h, x.(usedState)) }

func (h *stateHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
