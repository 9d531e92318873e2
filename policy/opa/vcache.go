package opa

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// flatCache is the virtual-document cache of one evaluation: a stack of
// frames kept in one slice and searched linearly. An evaluation caches a few
// dozen rule values at most, for which this allocates far less than OPA's
// default trie, and the slices are reused through a pool.
type flatCache struct {
	entries []vcEntry
	frames  []int // start index in entries of each frame
}

type vcEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
}

var _ topdown.VirtualCache = (*flatCache)(nil)

var flatCaches = sync.Pool{New: func() any { return &flatCache{} }}

// newFlatCache returns an empty cache with one frame, from the pool.
func newFlatCache() *flatCache {
	c := flatCaches.Get().(*flatCache)
	c.Push()
	return c
}

// release empties c (dropping its references) and returns it to the pool.
func (c *flatCache) release() {
	clear(c.entries)
	c.entries, c.frames = c.entries[:0], c.frames[:0]
	flatCaches.Put(c)
}

// Push implements topdown.VirtualCache.
func (c *flatCache) Push() { c.frames = append(c.frames, len(c.entries)) }

// Pop implements topdown.VirtualCache.
func (c *flatCache) Pop() {
	n := c.frames[len(c.frames)-1]
	c.frames = c.frames[:len(c.frames)-1]
	clear(c.entries[n:])
	c.entries = c.entries[:n]
}

func (c *flatCache) find(ref ast.Ref) int {
	for i := len(c.entries) - 1; i >= c.frames[len(c.frames)-1]; i-- {
		if refEqualReverse(c.entries[i].ref, ref) {
			return i
		}
	}
	return -1
}

// refEqualReverse compares from the last term, which differs first between
// the rule references of one policy.
func refEqualReverse(a, b ast.Ref) bool {
	if len(a) != len(b) {
		return false
	}
	for i := len(a) - 1; i >= 0; i-- {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// Get implements topdown.VirtualCache.
func (c *flatCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if i := c.find(ref); i >= 0 {
		return c.entries[i].value, c.entries[i].undefined
	}
	return nil, false
}

// Put implements topdown.VirtualCache. The reference is copied: the evaluator
// passes slices of buffers it reuses.
func (c *flatCache) Put(ref ast.Ref, value *ast.Term) {
	if i := c.find(ref); i >= 0 {
		if value != nil {
			c.entries[i].value = value
		} else {
			c.entries[i].undefined = true
		}
		return
	}
	c.entries = append(c.entries, vcEntry{ref: slices.Clone(ref), value: value, undefined: value == nil})
}

// Keys implements topdown.VirtualCache.
func (c *flatCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.entries[c.frames[len(c.frames)-1]:] {
		if e.value != nil {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
