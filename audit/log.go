package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Defaults for [Config].
const (
	DefaultCheckpointInterval = time.Second
	DefaultHeartbeat          = 5 * time.Minute
	DefaultMaxBatch           = 1024
	DefaultEnqueueLinger      = 2 * time.Millisecond
	DefaultSinkInterval       = time.Minute
	DefaultWriteTimeout       = 10 * time.Second
)

// Log errors.
var (
	// ErrClosed is returned by appends after [Log.Close].
	ErrClosed = errors.New("audit log closed")
	// ErrRollback is returned by [Open] when the store holds fewer records
	// than its own latest checkpoint covers, or records that do not match
	// it: the store was rolled back, truncated or altered.
	ErrRollback = errors.New("audit store does not match its latest checkpoint")
)

// Config configures a [Log]. Zero durations and sizes take the defaults.
type Config struct {
	// Origin names this log (one per sqlgated instance, unique across
	// instances sharing a store), e.g. "sqlgate.example/instance-1". It is
	// also the name of the checkpoint signing key.
	Origin string `json:"origin"`
	// Instance names this process in every record (e.g. the host name).
	Instance string `json:"instance"`
	// Signer signs checkpoints; its Name must equal Origin. A new key is
	// added to the key history (and an admin "key_rotation" record is
	// written) the first time it is used; old keys stay in the history.
	Signer Signer `json:"-"`
	// PreviousKeys are the verifier keys of this origin's earlier signing
	// keys. At start the store's latest checkpoint must be signed by Signer
	// or one of these: the key history in the store is not trusted for that,
	// because whoever can write the store could add a key of their own and
	// have the log sign on from a forged checkpoint.
	PreviousKeys []string `json:"-"`
	// ParamKey is the HMAC key for parameter values (see [Log.HashParams])
	// and decision inputs (see [Log.AppendWithInput]).
	ParamKey ParamKey `json:"-"`
	// PreviousParamKeys are earlier parameter keys: [Log.Inputs] checks
	// the stored input of a record whose input_hmac names one of them.
	PreviousParamKeys []ParamKey `json:"-"`
	// CheckpointInterval is the shortest time between two checkpoints while
	// records arrive (default 1s). Every record is covered by a checkpoint at
	// most about one interval after it was acknowledged.
	CheckpointInterval time.Duration `json:"checkpointInterval"`
	// Heartbeat is how long the log may stay idle before it writes a
	// "heartbeat" record and a checkpoint (default 5m).
	Heartbeat time.Duration `json:"heartbeat"`
	// MaxBatch caps the records committed in one store transaction
	// (default 1024).
	MaxBatch int `json:"maxBatch"`
	// EnqueueLinger is how long a batch holding only records nobody waits
	// for ([Log.Enqueue]: outcomes) may wait for more records before it is
	// committed (default 2ms; negative: never wait). The next call's intent
	// usually arrives within it, so the two share one store commit and the
	// intent does not queue behind a commit of the outcome alone.
	EnqueueLinger time.Duration `json:"enqueueLinger"`
	// Sink, when set, receives a copy of the latest checkpoint at most every
	// SinkInterval (default 1m) and at Close.
	Sink         Sink          `json:"-"`
	SinkInterval time.Duration `json:"sinkInterval"`
	// Retention, when positive, prunes record bodies older than this every
	// hour (see [Log.Prune]); InputRetention does the same for decision
	// inputs only.
	Retention      time.Duration `json:"retention"`
	InputRetention time.Duration `json:"inputRetention"`
	// WriteTimeout bounds one store write (default 10s).
	WriteTimeout time.Duration `json:"writeTimeout"`
	// Now is the clock (default time.Now).
	Now func() time.Time `json:"-"`
	// Logger receives background errors (checkpoint, heartbeat, sink,
	// retention); default discards.
	Logger *slog.Logger `json:"-"`
}

func (c *Config) setDefaults() {
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.EnqueueLinger == 0 {
		c.EnqueueLinger = DefaultEnqueueLinger
	}
	if c.SinkInterval <= 0 {
		c.SinkInterval = DefaultSinkInterval
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if !validOrigin(c.Origin) {
		errs = append(errs, fmt.Errorf("audit: origin %q must be non-empty printable text without spaces or '+'", c.Origin))
	}
	if c.Signer == nil {
		errs = append(errs, errors.New("audit: signer is required"))
	} else if c.Signer.Name() != c.Origin {
		errs = append(errs, fmt.Errorf("audit: signer key name %q must equal the origin %q", c.Signer.Name(), c.Origin))
	}
	if err := c.ParamKey.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("audit: %w", err))
	}
	ids := map[string]bool{c.ParamKey.ID: true}
	for _, k := range c.PreviousParamKeys {
		if err := k.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("audit: previous %w", err))
		}
		// Records name the key by its id: a hash or sealed key under one of
		// two keys of an id would be checked with the other.
		if ids[k.ID] {
			errs = append(errs, fmt.Errorf("audit: parameter key id %q is given to two keys: give every parameter key its own id", k.ID))
		}
		ids[k.ID] = true
	}
	if c.MaxBatch < 0 {
		errs = append(errs, errors.New("audit: maxBatch must not be negative"))
	}
	return errors.Join(errs...)
}

// Log is an origin's append-only, tamper-evident audit log. Appends are
// group-committed by one goroutine: concurrent callers' records go into one
// store transaction, and each caller returns only after that transaction is
// durable. Signed checkpoints cover the records at most every
// CheckpointInterval while busy and at every heartbeat while idle. A Log is
// safe for concurrent use.
type Log struct {
	cfg   Config
	store Store
	log   *slog.Logger

	reqs     chan *appendReq
	syncs    chan chan error
	quit     chan struct{}
	done     chan struct{}
	sinkCh   chan *Checkpoint
	sinkDone chan struct{}
	bgCancel context.CancelFunc
	bgDone   chan struct{}

	closeMu   sync.RWMutex // guards closed; senders hold it for reading while they send
	closed    bool
	closeOnce sync.Once
	closeErr  error

	// reqPool recycles requests whose waiter received the answer (a request
	// abandoned on ctx is never reused: the committer may still answer it).
	// It is per Log so that a log used inside a testing/synctest bubble
	// never hands its channels to another bubble.
	reqPool sync.Pool

	mu     sync.Mutex // guards latest
	latest *Checkpoint
	size   atomic.Int64

	stats struct {
		records, batches, checkpoints, writeErrors atomic.Int64
	}
	// failing holds the error of the latest store write when it failed.
	failing atomic.Pointer[error]
	// strand is the bookkeeping of the intents whose outcome is missing
	// (see [Log.Stranded]).
	strand strandBook
	// settled counts the commits after which the log's view of the store
	// was settled: a reload after a failed write, or a write, that
	// succeeded.
	settled atomic.Int64
	// failedIntents are the indexes of the intents of the batch whose write
	// failed (failed); the reload strands them if it finds that batch stored.
	failedIntents []int64
	// pendingSince is when the oldest request of the commit in progress was
	// made (Unix nanoseconds by cfg.Now; 0: no commit in progress), for
	// [Log.PendingWriteAge].
	pendingSince atomic.Int64
	// tree is the size and root of the tree the log vouches for (front,
	// published for readers outside the committer goroutine).
	tree atomic.Pointer[treeHead]
	// headMAC is HMAC-SHA256 keyed with the head key (see [Head]); used by
	// Open and then only by the committer goroutine, like headMsg, the
	// buffer of its message.
	headMAC hash.Hash
	headMsg []byte

	// Committer state, touched only by the committer goroutine (and by Open
	// before it starts).
	front    *frontier
	failed   *treeHead // the tree of the batch whose write failed, until the reload
	head     Head      // the head of the batch being written (reused)
	cpSize   int64
	cpTime   time.Time
	lastSink time.Time
	sinkDue  bool // the latest checkpoint waits for the sink interval to end
	reload   bool
	newKey   *Key
	buf      []byte
	recs     []StoredRecord
	hashes   []tlog.Hash
	ends     []int
	leaves   []tlog.Hash
	scratch  *frontier
	hasher   leafHasher
	pending  []*appendReq

	// paramHash makes the keyed hashes of parameters and decision inputs
	// under cfg.ParamKey (any goroutine).
	paramHash paramHasher
}

type appendReq struct {
	rec   *Record
	input []byte
	done  chan error
	ok    bool
	// queued is when the request was made (Unix nanoseconds by cfg.Now).
	queued int64
	// state tells the committer's answer and a waiter that gave up apart
	// (reqWaiting, reqAnswered, reqAbandoned).
	state atomic.Int32
	// then, when set, is called with the result instead of answering on
	// done (Enqueue: nobody waits).
	then func(index int64, err error)
}

// answer hands the result of a request to its waiter or callback.
func (l *Log) answer(req *appendReq, err error) {
	if req.then == nil {
		l.answered(req, err)
		req.done <- err
		return
	}
	index := req.rec.Index
	if err != nil {
		index = -1
		l.outcomeLost(req.rec)
	}
	req.then(index, err)
	req.rec, req.input, req.then = nil, nil, nil
	l.reqPool.Put(req)
}

// Open opens (or starts) the log of cfg.Origin in store. On a new origin it
// writes the admin "log_start" record; with a signing key the key history
// does not hold yet it writes "key_rotation". Before accepting appends it
// checks that the store still matches its latest checkpoint ([ErrRollback]
// otherwise) and covers every stored record with a checkpoint.
func Open(ctx context.Context, store Store, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	l := &Log{
		cfg:      cfg,
		store:    store,
		log:      cfg.Logger,
		reqs:     make(chan *appendReq, 2*cfg.MaxBatch),
		syncs:    make(chan chan error),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		sinkCh:   make(chan *Checkpoint, 1),
		sinkDone: make(chan struct{}),
		bgDone:   make(chan struct{}),
	}
	l.paramHash.key = cfg.ParamKey
	key, err := headKey(cfg.Signer, cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("open audit log %q: %w", cfg.Origin, err)
	}
	l.headMAC = hmac.New(sha256.New, key)
	if err := l.loadState(ctx, false); err != nil {
		return nil, err
	}
	vkey := cfg.Signer.VerifierKey()
	var first *Record
	// The record that names the key signing from here on: at the start of
	// the log, and whenever the signing key is not the one that signed the
	// latest checkpoint (a new key, or going back to an earlier one), so
	// that the verifier can refuse checkpoints a retired key signs later.
	switch {
	case l.front.size == 0:
		first = &Record{Kind: KindAdmin, Admin: &Admin{Action: AdminLogStart, Detail: vkey}}
	case l.newKey != nil || l.latest.KeyID != l.signerID():
		first = &Record{Kind: KindAdmin, Admin: &Admin{Action: AdminKeyRotation, Detail: vkey}}
	}
	if first != nil || l.front.size > l.cpSize || l.latest == nil {
		var reqs []*appendReq
		if first != nil {
			first.Time = cfg.Now()
			l.stamp(first)
			reqs = append(reqs, &appendReq{rec: first, done: make(chan error, 1)})
		}
		if err := l.commit(ctx, reqs, true); err != nil {
			return nil, fmt.Errorf("open audit log %q: %w", cfg.Origin, err)
		}
		if first != nil {
			if err := <-reqs[0].done; err != nil {
				return nil, fmt.Errorf("open audit log %q: %w", cfg.Origin, err)
			}
		}
	}
	// The goroutines outlive Open's ctx (keeping its values): the log runs
	// until Close.
	detached := context.WithoutCancel(ctx)
	bg, cancel := context.WithCancel(detached)
	l.bgCancel = cancel
	go l.run(detached)
	go l.runSink(detached)
	go l.runRetention(bg)
	return l, nil
}

// loadState reads the store's state for the origin and checks it against
// the latest checkpoint. It sets front, latest, cpSize, cpTime and newKey.
//
// Records past the latest checkpoint must be the log's own: at Open the
// store's tree must equal its authenticated head; on a reload after a failed
// write it must equal the tree the log had or the one of the failed batch
// (whose commit may have succeeded before the error reached the log).
// Anything else is refused with [ErrUnauthenticated]: the log never signs a
// checkpoint over records someone else wrote.
func (l *Log) loadState(ctx context.Context, reload bool) error {
	origin := l.cfg.Origin
	st, err := l.store.Load(ctx, origin)
	if err != nil {
		return fmt.Errorf("load audit log %q: %w", origin, err)
	}
	front, ok := newFrontier(st.Size, st.Frontier)
	if !ok {
		return fmt.Errorf("load audit log %q: %w: frontier has %d hashes for size %d", origin, ErrRollback, len(st.Frontier), st.Size)
	}
	vkey := l.cfg.Signer.VerifierKey()
	known := false
	for _, k := range st.Keys {
		known = known || k.VerifierKey == vkey
	}
	l.newKey = nil
	if !known {
		l.newKey = &Key{Origin: origin, VerifierKey: vkey, Added: l.cfg.Now().UTC()}
	}
	// The log signs on from what it finds, so what it finds must be
	// checked against what the store cannot forge: keys from the
	// configuration, the checkpoint this process signed last, and the
	// copies in the sink.
	verifiers, err := NewVerifiers(append([]string{vkey}, l.cfg.PreviousKeys...)...)
	if err != nil {
		return fmt.Errorf("load audit log %q: previous keys: %w", origin, err)
	}
	var latest *Checkpoint
	switch {
	case st.Latest != nil:
		latest, err = OpenCheckpoint(st.Latest, verifiers)
		if err != nil {
			return fmt.Errorf("load audit log %q: %w: the latest stored checkpoint is not signed by the signing key or a configured previous key (after a key rotation, configure the old verifier key): %w", origin, ErrRollback, err)
		}
		if latest.Origin != origin {
			return fmt.Errorf("load audit log %q: latest checkpoint names origin %q", origin, latest.Origin)
		}
		if err := l.checkAgainst(ctx, front, latest); err != nil {
			return fmt.Errorf("load audit log %q: %w", origin, err)
		}
		if latest.KeyID != l.signerID() {
			if reload {
				// Every checkpoint since Open is this process's own.
				return fmt.Errorf("load audit log %q: %w: after a failed write the latest stored checkpoint (size %d) is signed by key %s, not by this log's signing key %s: it was written by someone else", origin, ErrRollback, latest.Size, latest.KeyID, l.signerID())
			}
			if err := l.checkRetiredKey(ctx, front, latest, verifiers); err != nil {
				return fmt.Errorf("load audit log %q: %w", origin, err)
			}
		}
	case front.size > 0:
		// Every batch that starts a log carries its checkpoint, so records
		// without any checkpoint mean the checkpoints were deleted.
		return fmt.Errorf("load audit log %q: %w: the store holds %d records but no checkpoint", origin, ErrRollback, front.size)
	}
	l.mu.Lock()
	signed := l.latest
	l.mu.Unlock()
	if signed != nil {
		if latest == nil || latest.Size < signed.Size {
			return fmt.Errorf("load audit log %q: %w: the store went back behind the checkpoint of %d records this process signed", origin, ErrRollback, signed.Size)
		}
		if err := l.checkAgainst(ctx, front, signed); err != nil {
			return fmt.Errorf("load audit log %q: against the checkpoint this process signed: %w", origin, err)
		}
	}
	if err := l.checkSinkCopy(ctx, front, verifiers); err != nil {
		return fmt.Errorf("load audit log %q: %w", origin, err)
	}
	root := front.root()
	if reload {
		if err := l.checkReload(front.size, root); err != nil {
			return fmt.Errorf("load audit log %q: %w", origin, err)
		}
		if f := l.failed; f != nil && f.size == front.size && f.root == root {
			// The failed batch is stored after all: its intents' callers
			// were told otherwise and perform nothing, so nobody writes
			// their outcomes.
			for _, idx := range l.failedIntents {
				l.strandAt(idx, l.settled.Load()+1) // eligible once this reload counts
			}
		}
		l.failedIntents = l.failedIntents[:0]
	} else if covered := checkpointSize(latest); front.size > covered {
		if err := l.checkHead(st.Head, front.size, root, covered); err != nil {
			return fmt.Errorf("load audit log %q: %w", origin, err)
		}
	}
	l.front = front
	l.failed = nil
	l.tree.Store(&treeHead{size: front.size, root: root})
	l.size.Store(front.size)
	l.mu.Lock()
	l.latest = latest
	l.mu.Unlock()
	if latest != nil {
		l.cpSize, l.cpTime = latest.Size, latest.Time
	} else {
		l.cpSize, l.cpTime = 0, time.Time{}
	}
	return nil
}

// signerID returns the key id ("<name>+<hex hash>") of the signing key.
func (l *Log) signerID() string {
	return fmt.Sprintf("%s+%08x", l.cfg.Signer.Name(), l.cfg.Signer.KeyHash())
}

// recordLister and checkpointLister are [Store]s that can list their
// records and checkpoints (both stores of sqlgate can: they are [Source]s
// too).
type (
	recordLister interface {
		Records(ctx context.Context, origin string, from, to int64, fn func(index int64, data []byte, leaf *tlog.Hash) error) error
	}
	checkpointLister interface {
		Checkpoints(ctx context.Context, origin string, fn func(note []byte) error) error
	}
)

// adminPrefix is in the first 80 bytes of every admin record's canonical
// encoding, right after `{"v":1,"index":N`.
var adminPrefix = []byte(`,"kind":"admin",`)

// checkRetiredKey checks, when the latest stored checkpoint is signed by
// a previous key rather than the signing key (a rotation), that the log had
// not already rotated away from that key. The rule is the verifier's
// ([ProblemRetiredKey], [rotationsExtension]): from the first checkpoint
// that says the log records its rotations, the latest checkpoint must be
// signed by the key that the last log_start or key_rotation record since
// names, or, without one, by that first checkpoint's key. Otherwise a
// holder of the retired key could rewrite what came after the rotation,
// sign it with the retired key, and have this log carry on from it. Before
// that first checkpoint (a log of a version up to e8247d9, which went back
// to earlier keys without a record) any configured key is accepted.
//
// It reads the stored checkpoints, and the retained records from the
// first checkpoint that records rotations, once (only at a rotation). When
// retention removed records after that first checkpoint and no rotation
// record is retained, the newest checkpoint before the retained records
// stands for the rotation records removed, as in the verifier. A store that
// cannot list its records and checkpoints is not checked here (the
// verifier still refuses such checkpoints, see [ProblemRetiredKey]).
func (l *Log) checkRetiredKey(ctx context.Context, front *frontier, latest *Checkpoint, verifiers note.Verifiers) error {
	records, ok := l.store.(recordLister)
	cps, ok2 := l.store.(checkpointLister)
	if !ok || !ok2 {
		return nil
	}
	origin := l.cfg.Origin
	// The first checkpoint that records rotations (the smallest size).
	var first *Checkpoint
	err := cps.Checkpoints(ctx, origin, func(msg []byte) error {
		if !recordsRotations(msg) {
			return nil
		}
		c, err := ParseCheckpoint(noteText(msg))
		if err != nil || c.Size > latest.Size || first != nil && c.Size >= first.Size {
			return nil //nolint:nilerr // not a candidate; the verifier names bad checkpoints
		}
		if c, err = OpenCheckpoint(msg, verifiers); err == nil && c.Origin == origin {
			first = c
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the checkpoints: %w", err)
	}
	// The stored checkpoints are the store writer's to replace: the
	// newest copy in the sink, which that writer cannot touch, starts the
	// rule too when it records rotations (a holder of a retired key who
	// replaced every stored checkpoint by ones without the line would
	// otherwise sign on unnoticed).
	if r, ok := l.cfg.Sink.(SinkReader); ok {
		raw, err := r.Newest(ctx, origin)
		if err != nil {
			return fmt.Errorf("read the newest checkpoint copy: %w", err)
		}
		if raw != nil && recordsRotations(raw) {
			if c, err := OpenCheckpoint(raw, verifiers); err == nil && c.Origin == origin && c.Size <= latest.Size && (first == nil || c.Size < first.Size) {
				first = c
			}
		}
	}
	if first == nil {
		return nil // written by a version before rotationsExtension
	}
	var last *Record
	var lastData []byte
	retained := latest.Size // the first retained record from first.Size
	err = records.Records(ctx, origin, first.Size, latest.Size, func(index int64, data []byte, _ *tlog.Hash) error {
		retained = min(retained, index)
		if !bytes.Contains(data[:min(len(data), 80)], adminPrefix) {
			return nil
		}
		r, err := DecodeRecord(data)
		if err != nil || r.Admin == nil || r.Admin.Action != AdminLogStart && r.Admin.Action != AdminKeyRotation {
			return nil //nolint:nilerr // not a rotation record; the verifier names bad records
		}
		last, lastData = r, bytes.Clone(data)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the key rotations: %w", err)
	}
	if last == nil {
		what := "the log records its key rotations from its checkpoint"
		if retained > first.Size {
			// Retention removed records after the first checkpoint:
			// the newest checkpoint before the retained records stands
			// for the rotation records removed, as in the verifier.
			what = "the newest checkpoint before the retained records is the one"
			if first, err = newestCheckpoint(ctx, cps, origin, retained, verifiers); err != nil {
				return fmt.Errorf("read the checkpoints: %w", err)
			}
			if first == nil {
				return nil // not checked here
			}
		}
		if first.KeyID == latest.KeyID {
			return nil
		}
		return fmt.Errorf("%w: the latest stored checkpoint (size %d) is signed by key %s, but %s of size %d, signed by key %s, and no key_rotation record since names %s: a retired key signed records written after it (see \"Keys and rotation\" in docs/audit.md)",
			ErrRollback, latest.Size, latest.KeyID, what, first.Size, first.KeyID, latest.KeyID)
	}
	named := keyID(strings.TrimSpace(last.Admin.Detail))
	if named == latest.KeyID {
		return nil
	}
	// Only a record of the log's own tree counts as evidence.
	th := &treeHead{size: front.size, root: front.root()}
	if err := l.checkRecords(ctx, th, []int64{last.Index}, []tlog.Hash{LeafHash(lastData)}); err != nil {
		return err
	}
	return fmt.Errorf("%w: the latest stored checkpoint (size %d) is signed by key %s, which this log retired at record %d (%s to key %s): a retired key signed records written after the rotation (see \"Keys and rotation\" in docs/audit.md)",
		ErrRollback, latest.Size, latest.KeyID, last.Index, last.Admin.Action, named)
}

// newestCheckpoint returns the stored checkpoint of origin with the largest
// size at most size, nil when there is none or verifiers do not accept it.
func newestCheckpoint(ctx context.Context, cps checkpointLister, origin string, size int64, verifiers note.Verifiers) (*Checkpoint, error) {
	var best []byte
	bestSize := int64(-1)
	err := cps.Checkpoints(ctx, origin, func(msg []byte) error {
		if c, err := ParseCheckpoint(noteText(msg)); err == nil && c.Size <= size && c.Size > bestSize {
			best, bestSize = bytes.Clone(msg), c.Size
		}
		return nil
	})
	if err != nil || best == nil {
		return nil, err
	}
	c, err := OpenCheckpoint(best, verifiers)
	if err != nil || c.Origin != origin {
		return nil, nil //nolint:nilerr // not checked here; the verifier names bad checkpoints
	}
	return c, nil
}

func checkpointSize(c *Checkpoint) int64 {
	if c == nil {
		return 0
	}
	return c.Size
}

// checkHead checks records [covered, size) past the latest checkpoint: the
// store's authenticated head must carry a valid MAC and name the store's
// tree.
func (l *Log) checkHead(h *Head, size int64, root tlog.Hash, covered int64) error {
	tail, have := fmt.Sprintf("records %d to %d", covered, size-1), "have"
	if size-1 == covered {
		tail, have = fmt.Sprintf("record %d", covered), "has"
	}
	tail += fmt.Sprintf(" (past the latest checkpoint, which covers %d records; stored hash ids from %d)", covered, tlog.StoredHashIndex(0, covered))
	const what = "see \"Records past the latest checkpoint\" in docs/audit.md before anything else"
	switch {
	case h == nil:
		return fmt.Errorf("%w: %s %s no authenticated head: inserted without the log, or left by a crash of a version without heads; %s", ErrUnauthenticated, tail, have, what)
	case !hmac.Equal(h.MAC, headMAC(l.headMAC, nil, &l.headMsg, l.cfg.Origin, h.Size, h.Root)):
		return fmt.Errorf("%w: %s: the authenticated head does not verify with this signing key: altered, or written under another key (after a crash, start once with the previous signing key and stop cleanly before switching keys); %s", ErrUnauthenticated, tail, what)
	case h.Size != size || h.Root != root:
		return fmt.Errorf("%w: %s: the store's tree of %d records differs from the log's authenticated head of %d records; %s", ErrUnauthenticated, tail, size, h.Size, what)
	}
	return nil
}

// checkReload checks the store's tree after a failed write: it must be the
// log's own (the write changed nothing) or the failed batch's (the commit
// succeeded but its answer was lost).
func (l *Log) checkReload(size int64, root tlog.Hash) error {
	if t := l.tree.Load(); t != nil && t.size == size && t.root == root {
		return nil
	}
	if f := l.failed; f != nil && f.size == size && f.root == root {
		return nil
	}
	want := fmt.Sprintf("the log's tree of %d records", l.front.size)
	if l.failed != nil {
		want += fmt.Sprintf(" nor the failed batch's tree of %d records", l.failed.size)
	}
	return fmt.Errorf("%w: after a failed write the store holds a tree of %d records whose root matches neither %s: records were written or removed under this origin by someone else; the log refuses appends until the store is back to the log's tree (a restart checks the store against its authenticated head; see \"Records past the latest checkpoint\" in docs/audit.md)", ErrUnauthenticated, size, want)
}

// checkSinkCopy checks the stored tree against the newest checkpoint copy in
// the sink, when the sink can read its copies back: a store whose
// checkpoints were deleted or rolled back is refused even after a restart.
func (l *Log) checkSinkCopy(ctx context.Context, front *frontier, verifiers note.Verifiers) error {
	r, ok := l.cfg.Sink.(SinkReader)
	if !ok {
		return nil
	}
	raw, err := r.Newest(ctx, l.cfg.Origin)
	if err != nil {
		return fmt.Errorf("read the newest checkpoint copy: %w", err)
	}
	if raw == nil {
		return nil
	}
	cp, err := OpenCheckpoint(raw, verifiers)
	if err != nil {
		return fmt.Errorf("%w: the newest checkpoint copy in the sink does not open with the signing key or a configured previous key: %w", ErrRollback, err)
	}
	if cp.Origin != l.cfg.Origin {
		return fmt.Errorf("%w: the newest checkpoint copy in the sink names origin %q", ErrRollback, cp.Origin)
	}
	if err := l.checkAgainst(ctx, front, cp); err != nil {
		where := "the sink"
		if d, ok := l.cfg.Sink.(*DirSink); ok {
			where = "the sink " + filepath.Join(d.Dir, escapeOrigin(l.cfg.Origin))
		}
		return fmt.Errorf("against the newest checkpoint copy in %s: %w (the store lost records the copy covers: a restore from an older backup, or deleted checkpoints; to go on after a restore, start under a new audit.origin and keep this origin's copies: verifying with them as --trusted-checkpoint shows what was lost; see \"Restoring the control database from a backup\" in docs/operations.md)", where, err)
	}
	return nil
}

// checkAgainst verifies that the stored tree of size front.size extends the
// tree that cp signed.
func (l *Log) checkAgainst(ctx context.Context, front *frontier, cp *Checkpoint) error {
	n := front.size
	switch {
	case cp.Size > n:
		return fmt.Errorf("%w: checkpoint covers %d records, store has %d", ErrRollback, cp.Size, n)
	case cp.Size == n:
		if front.root() != cp.Root {
			return fmt.Errorf("%w: tree hash of %d records differs from the checkpoint", ErrRollback, n)
		}
		return nil
	}
	proof, err := tlog.ProveTree(n, cp.Size, hashReader(ctx, l.store, l.cfg.Origin))
	if err != nil {
		return fmt.Errorf("consistency proof %d -> %d: %w", cp.Size, n, err)
	}
	if err := tlog.CheckTree(proof, n, front.root(), cp.Size, cp.Root); err != nil {
		return fmt.Errorf("%w: stored tree of %d records does not extend the checkpoint of %d", ErrRollback, n, cp.Size)
	}
	return nil
}

// stamp fills the fields the log owns.
func (l *Log) stamp(r *Record) {
	r.V = SchemaVersion
	r.Origin = l.cfg.Origin
	r.Instance = l.cfg.Instance
	if r.Time.IsZero() {
		r.Time = l.cfg.Now()
	}
	r.Time = r.Time.UTC()
}

// Append adds r to the log and returns its index once it is durable. It
// fills r.V, r.Index, r.Origin, r.Instance and, when zero, r.Time; the
// caller must not touch r until Append returns. Any error means the record
// may not be durable: the caller must not perform the action it describes
// (fail closed). When ctx ends before the answer Append returns its error,
// but the record may still be written: an intent that then is stored is
// kept for [Log.Stranded] (its caller performs nothing, so no outcome
// follows).
func (l *Log) Append(ctx context.Context, r *Record) (int64, error) {
	return l.append(ctx, r, nil)
}

// AppendWithInput is [Log.Append] plus a sidecar: input (the decision input,
// redacted parameters removed) is stored beside the record for policy
// replay, and its keyed hash under the parameter key ([HashInput]) is set
// in r.InputHMAC (r.InputSHA256 is cleared: the input holds parameter
// values and claims, which an unkeyed hash would let anyone confirm by
// guessing). The sidecar is not part of the Merkle leaf, so it can be
// pruned without breaking verification.
func (l *Log) AppendWithInput(ctx context.Context, r *Record, input []byte) (int64, error) {
	if input != nil && r != nil {
		r.InputSHA256 = ""
		r.InputHMAC = l.paramHash.input(input)
	}
	return l.append(ctx, r, input)
}

// errLogAdmin refuses a caller's record that only the log may write.
func errLogAdmin(r *Record) error {
	if r.Kind == KindAdmin && r.Admin != nil && (r.Admin.Action == AdminLogStart || r.Admin.Action == AdminKeyRotation) {
		return fmt.Errorf("admin action %q is written by the audit log itself", r.Admin.Action)
	}
	return nil
}

func (l *Log) append(ctx context.Context, r *Record, input []byte) (int64, error) {
	if r == nil {
		return -1, errors.New("audit append: nil record")
	}
	if err := errLogAdmin(r); err != nil {
		return -1, fmt.Errorf("audit append: %w", err)
	}
	l.stamp(r)
	req := l.getReq()
	req.rec, req.input = r, input
	req.queued = l.cfg.Now().UnixNano()
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		req.rec, req.input = nil, nil
		l.reqPool.Put(req)
		return -1, ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		req.rec, req.input = nil, nil
		l.reqPool.Put(req)
		l.notQueued(r)
		return -1, fmt.Errorf("audit append: %w", ctx.Err())
	}
	l.closeMu.RUnlock()
	var err error
	select {
	case err = <-req.done:
	case <-ctx.Done():
		if l.abandon(req, r) {
			return -1, fmt.Errorf("audit append: %w", ctx.Err())
		}
		// Answered meanwhile: the answer stands (a durable intent whose
		// caller was told it failed would have no outcome).
		err = <-req.done
	}
	req.rec, req.input = nil, nil
	l.reqPool.Put(req)
	if err != nil {
		return -1, err
	}
	return r.Index, nil
}

// Enqueue appends r without waiting for it to be durable: it returns once r
// is queued for the next group commit, and then (if not nil) is called from
// the committer with r's index, or -1 and the error, once the batch is
// durable or failed. then must not block. Use it for records nothing waits
// on (a call's outcome after its durable intent); Close commits what is
// queued. Errors: [ErrClosed], or ctx's when the queue stays full. The
// intent of an outcome whose append fails, or that found the queue full, is
// kept for [Log.Stranded].
func (l *Log) Enqueue(ctx context.Context, r *Record, then func(index int64, err error)) error {
	if r == nil {
		return errors.New("audit enqueue: nil record")
	}
	if err := errLogAdmin(r); err != nil {
		return fmt.Errorf("audit enqueue: %w", err)
	}
	l.stamp(r)
	req := l.getReq()
	req.rec, req.input = r, nil
	req.queued = l.cfg.Now().UnixNano()
	req.then = then
	if req.then == nil {
		req.then = func(int64, error) {}
	}
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		req.rec, req.then = nil, nil
		l.reqPool.Put(req)
		return ErrClosed
	}
	select {
	case l.reqs <- req:
		return nil
	case <-ctx.Done():
		req.rec, req.then = nil, nil
		l.reqPool.Put(req)
		l.notQueued(r)
		return fmt.Errorf("audit enqueue: %w", ctx.Err())
	}
}

func (l *Log) getReq() *appendReq {
	if r, ok := l.reqPool.Get().(*appendReq); ok {
		r.state.Store(reqWaiting)
		return r
	}
	return &appendReq{done: make(chan error, 1)}
}

// HashParams returns the keyed hash ("hmac-sha256:<key id>:<hex>") of each
// parameter value under the configured ParamKey, and "redacted" for the
// names in redact. See [HashValue] for the value encoding.
func (l *Log) HashParams(params map[string]any, redact []string) map[string]string {
	return l.paramHash.params(params, redact)
}

// Origin returns the log's origin.
func (l *Log) Origin() string { return l.cfg.Origin }

// Size returns the number of durable records.
func (l *Log) Size() int64 { return l.size.Load() }

// Latest returns the newest signed checkpoint.
func (l *Log) Latest(ctx context.Context) (*Checkpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.latest == nil {
		return nil, fmt.Errorf("latest checkpoint: %w", ErrNotFound)
	}
	c := *l.latest
	return &c, nil
}

// Sync writes a checkpoint now if any acknowledged record is not yet
// covered by one, and returns once it is durable.
func (l *Log) Sync(ctx context.Context) error {
	ch := make(chan error, 1)
	select {
	case l.syncs <- ch:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("audit sync: %w", ctx.Err())
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit sync: %w", ctx.Err())
	}
}

// Stats are counters of a Log since Open.
type Stats struct {
	Size        int64 `json:"size"`
	Records     int64 `json:"records"`
	Batches     int64 `json:"batches"`
	Checkpoints int64 `json:"checkpoints"`
	WriteErrors int64 `json:"writeErrors"`
	// Stranded counts the intents of this process whose outcome is not
	// stored yet although their call has ended (see [Log.Stranded]).
	Stranded int64 `json:"stranded"`
	// StrandedDropped counts the intents without an outcome not kept for
	// recovery while running because too many were kept already; the next
	// start recovers them.
	StrandedDropped int64 `json:"strandedDropped"`
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Size:            l.size.Load(),
		Records:         l.stats.records.Load(),
		Batches:         l.stats.batches.Load(),
		Checkpoints:     l.stats.checkpoints.Load(),
		WriteErrors:     l.stats.writeErrors.Load(),
		Stranded:        l.strand.n.Load(),
		StrandedDropped: l.strand.dropped.Load(),
	}
}

// WriteError returns the error of the log's latest store write when that
// write failed, else nil. While the store refuses writes every append fails
// (and every call is refused): readiness checks report it. After a failure
// the log tries a heartbeat every few seconds, so the error clears soon
// after the store recovers, with or without calls.
func (l *Log) WriteError() error {
	if err := l.failing.Load(); err != nil {
		return *err
	}
	return nil
}

// StallBound is how long the oldest unanswered append (or a checkpoint or
// heartbeat write) may wait before [Log.Stalled] reports the store stalled:
// far longer than a healthy group commit takes (milliseconds), and well
// below the write timeout ([DefaultWriteTimeout]), after which the write
// fails and [Log.WriteError] reports it.
const StallBound = 3 * time.Second

// ErrStalled is returned (wrapped) by [Log.Stalled].
var ErrStalled = errors.New("audit store write stalled")

// PendingWriteAge returns how long the oldest request of the store write in
// progress has waited (since its append was made; for a checkpoint or
// heartbeat, since the write began), 0 when no write is in progress. A
// healthy log's writes take milliseconds; a store that holds every write
// (a lock on its table, a stalled disk, a control database that stopped
// answering) makes it grow until the write fails after the write timeout.
func (l *Log) PendingWriteAge() time.Duration {
	since := l.pendingSince.Load()
	if since == 0 {
		return 0
	}
	return max(l.cfg.Now().Sub(time.Unix(0, since)), 0)
}

// Stalled returns an error wrapping [ErrStalled] while [Log.PendingWriteAge]
// is over [StallBound] (or half the configured WriteTimeout when that is
// shorter), else nil: appends hang, and each fails once the write times out
// ([Log.WriteError] reports that only then). Readiness checks report it.
func (l *Log) Stalled() error {
	bound := min(StallBound, l.cfg.WriteTimeout/2)
	if age := l.PendingWriteAge(); age > bound {
		return fmt.Errorf("%w: the oldest pending append has waited %s for the store (more than %s)", ErrStalled, age.Round(time.Millisecond), bound)
	}
	return nil
}

// Close stops accepting appends, commits the queued ones, writes a final
// checkpoint, hands it to the sink and waits for the sink. It does not close
// the store.
func (l *Log) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.closeMu.Lock()
		l.closed = true
		l.closeMu.Unlock()
		close(l.quit)
		l.bgCancel()
	})
	for _, ch := range []chan struct{}{l.done, l.sinkDone, l.bgDone} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("close audit log: %w", ctx.Err())
		}
	}
	return l.closeErr
}

// run is the committer goroutine.
func (l *Log) run(ctx context.Context) {
	defer close(l.done)
	defer close(l.sinkCh)
	heartbeat := time.NewTimer(l.cfg.Heartbeat)
	defer heartbeat.Stop()
	cpTimer := time.NewTimer(time.Hour)
	cpTimer.Stop()
	defer cpTimer.Stop()
	cpArmed := false
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	sinkTimer := time.NewTimer(time.Hour)
	sinkTimer.Stop()
	defer sinkTimer.Stop()
	sinkArmed := false
	for {
		select {
		case req := <-l.reqs:
			l.busy(req.queued) // the oldest: the queue is FIFO
			reqs := l.drain(append(l.pending[:0], req))
			if l.cfg.EnqueueLinger > 0 && noWaiter(reqs) {
				reqs = l.linger(reqs, linger)
			}
			_ = l.commit(ctx, reqs, false) // errors go to the waiters
			l.idle()
			clear(reqs)
			l.pending = reqs[:0]
			heartbeat.Reset(l.cfg.Heartbeat)
		case <-cpTimer.C:
			cpArmed = false
			l.busy(0)
			if err := l.commit(ctx, nil, true); err != nil {
				l.log.ErrorContext(ctx, "audit checkpoint failed", "origin", l.cfg.Origin, "error", err)
			}
			l.idle()
		case <-heartbeat.C:
			l.busy(0)
			l.heartbeat(ctx)
			l.idle()
			heartbeat.Reset(l.cfg.Heartbeat)
		case <-sinkTimer.C:
			sinkArmed = false
			if l.sinkDue {
				// The newest checkpoint of a burst was held back by the
				// sink interval: it goes out now, not at the next activity.
				l.mu.Lock()
				latest := l.latest
				l.mu.Unlock()
				l.lastSink, l.sinkDue = l.cfg.Now(), false
				if latest != nil {
					l.toSink(latest)
				}
			}
		case ch := <-l.syncs:
			l.busy(0)
			err := l.commit(ctx, nil, true)
			l.idle()
			ch <- err
		case <-l.quit:
			l.closeErr = l.shutdown(ctx)
			return
		}
		if !cpArmed && l.front.size > l.cpSize {
			cpTimer.Reset(max(l.cfg.CheckpointInterval-l.cfg.Now().Sub(l.cpTime), time.Millisecond))
			cpArmed = true
		}
		if !sinkArmed && l.sinkDue {
			sinkTimer.Reset(max(l.cfg.SinkInterval-l.cfg.Now().Sub(l.lastSink), time.Millisecond))
			sinkArmed = true
		}
		if l.failing.Load() != nil {
			// The last write failed: try again soon with a heartbeat, so a
			// store that recovered is known to (WriteError, readiness)
			// without waiting for the next call or a full heartbeat period.
			heartbeat.Reset(min(l.cfg.Heartbeat, retryAfterFailure))
		}
	}
}

// busy marks a commit in progress whose oldest request was made at since
// (Unix nanoseconds by cfg.Now; 0: now, for a commit no append asked for),
// for [Log.PendingWriteAge], until idle.
func (l *Log) busy(since int64) {
	if since == 0 {
		since = l.cfg.Now().UnixNano()
	}
	l.pendingSince.Store(since)
}

// idle marks the end of the commit that busy marked.
func (l *Log) idle() { l.pendingSince.Store(0) }

// failBatch answers the batch's records with err (none was stored), records
// it for WriteError first, and returns it.
func (l *Log) failBatch(reqs []*appendReq, err error) error {
	l.setWriteError(err)
	for _, req := range reqs {
		if req.ok {
			req.rec.Index = -1
			l.answer(req, err)
		}
	}
	return err
}

// setWriteError records the outcome of a store write for WriteError, before
// the waiters are answered, so that a caller who saw its append fail (or
// succeed) sees the same in WriteError.
func (l *Log) setWriteError(err error) {
	if err != nil {
		l.failing.Store(&err)
	} else if l.failing.Load() != nil {
		l.failing.Store(nil)
	}
}

// retryAfterFailure is how soon the log writes a heartbeat after a failed
// write, to learn that the store took writes again.
const retryAfterFailure = 5 * time.Second

// drain adds the requests already queued to reqs, up to MaxBatch.
func (l *Log) drain(reqs []*appendReq) []*appendReq {
	for len(reqs) < l.cfg.MaxBatch {
		select {
		case r := <-l.reqs:
			reqs = append(reqs, r)
		default:
			return reqs
		}
	}
	return reqs
}

// noWaiter reports whether nobody waits for any request of reqs.
func noWaiter(reqs []*appendReq) bool {
	for _, r := range reqs {
		if r.then == nil {
			return false
		}
	}
	return true
}

// linger waits up to EnqueueLinger for more requests to commit with reqs,
// which nobody waits for; it stops as soon as a request with a waiter
// arrives, the batch is full, or the log is closing.
func (l *Log) linger(reqs []*appendReq, t *time.Timer) []*appendReq {
	t.Reset(l.cfg.EnqueueLinger)
	defer t.Stop()
	for len(reqs) < l.cfg.MaxBatch {
		select {
		case r := <-l.reqs:
			reqs = l.drain(append(reqs, r))
			if !noWaiter(reqs) {
				return reqs
			}
		case <-t.C:
			return reqs
		case <-l.quit:
			return reqs
		}
	}
	return reqs
}

// shutdown commits what is queued and writes the final checkpoint. No
// sender can be mid-send: Close set closed under closeMu before closing quit.
func (l *Log) shutdown(ctx context.Context) error {
	var errs []error
	for {
		reqs := l.drain(l.pending[:0])
		if len(reqs) == 0 {
			break
		}
		if err := l.commit(ctx, reqs, false); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.commit(ctx, nil, true); err != nil {
		errs = append(errs, err)
	}
	l.mu.Lock()
	latest := l.latest
	l.mu.Unlock()
	if latest != nil && l.cfg.Sink != nil {
		l.toSink(latest)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close audit log: %w", err)
	}
	return nil
}

func (l *Log) heartbeat(ctx context.Context) {
	r := &Record{Kind: KindHeartbeat, Time: l.cfg.Now()}
	l.stamp(r)
	req := &appendReq{rec: r, done: make(chan error, 1)}
	_ = l.commit(ctx, []*appendReq{req}, true)
	if err := <-req.done; err != nil {
		l.log.ErrorContext(ctx, "audit heartbeat failed", "origin", l.cfg.Origin, "error", err)
	}
}

// commit writes reqs (and a checkpoint when due or when forced) in one store
// transaction and answers every request. It returns the write error.
func (l *Log) commit(ctx context.Context, reqs []*appendReq, forceCheckpoint bool) error {
	if l.reload {
		rctx, cancel := context.WithTimeout(ctx, l.cfg.WriteTimeout)
		err := l.loadState(rctx, true)
		cancel()
		if err != nil {
			err = fmt.Errorf("audit append: reload after failed write: %w", err)
			l.setWriteError(err)
			for _, req := range reqs {
				l.answer(req, err)
			}
			return err
		}
		l.reload = false
		l.settled.Add(1)
	}
	now := l.cfg.Now()
	// Work on a scratch copy of the frontier; it becomes the log's only
	// once the batch is durable.
	front := l.scratch
	if front == nil {
		front = &frontier{}
	}
	front.size = l.front.size
	front.hashes = append(front.hashes[:0], l.front.hashes...)
	buf := l.buf[:0]
	hashes := l.hashes[:0]
	ends := l.ends[:0]
	leaves := l.leaves[:0]
	hasher := &l.hasher
	n := 0
	for _, req := range reqs {
		req.ok = false
		req.rec.Index = front.size
		start := len(buf)
		var err error
		buf, err = req.rec.AppendCanonical(buf)
		if err != nil {
			l.answer(req, fmt.Errorf("audit append: %w", err))
			continue
		}
		req.ok = true
		ends = append(ends, len(buf))
		leaf := hasher.sum(buf[start:])
		leaves = append(leaves, leaf)
		hashes = front.appendStored(leaf, hashes)
		n++
	}
	recs := l.recs[:0]
	start, i := 0, 0
	for _, req := range reqs {
		if !req.ok {
			continue
		}
		r := req.rec
		recs = append(recs, StoredRecord{
			Index: r.Index, Kind: r.Kind, IntentIndex: r.IntentIndex, Time: r.Time,
			Data: buf[start:ends[i]], Leaf: leaves[i], Input: req.input,
		})
		start = ends[i]
		i++
	}
	b := Batch{Records: recs, Hashes: hashes, Key: l.newKey}
	var th *treeHead
	if len(recs) > 0 {
		b.HashIndex = tlog.StoredHashIndex(0, recs[0].Index)
		th = &treeHead{size: front.size, root: front.root()}
		l.head = Head{Size: th.size, Root: th.root, MAC: headMAC(l.headMAC, l.head.MAC[:0], &l.headMsg, l.cfg.Origin, th.size, th.root)}
		b.Head = &l.head
	}
	var cp *Checkpoint
	if front.size > l.cpSize && (forceCheckpoint || now.Sub(l.cpTime) >= l.cfg.CheckpointInterval) {
		var err error
		cp, err = l.sign(front, now)
		switch {
		case err != nil && forceCheckpoint:
			// A forced checkpoint starts a log (or covers what a restart
			// found): the records must not be stored without it.
			return l.failBatch(reqs, fmt.Errorf("audit append: sign checkpoint: %w", err))
		case err != nil:
			l.log.ErrorContext(ctx, "audit checkpoint signing failed", "origin", l.cfg.Origin, "error", err)
		default:
			b.Checkpoint = &StoredCheckpoint{Size: cp.Size, Time: cp.Time, Note: cp.Note}
		}
	}
	l.buf, l.hashes, l.ends, l.recs, l.leaves = buf, hashes, ends, recs, leaves
	if len(recs) == 0 && b.Checkpoint == nil && b.Key == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, l.cfg.WriteTimeout)
	err := l.store.Write(wctx, l.cfg.Origin, &b)
	cancel()
	clear(recs) // drop references to inputs
	if err != nil {
		l.reload = true
		l.failed = th
		l.failedIntents = l.failedIntents[:0]
		for _, req := range reqs {
			if req.ok && req.rec.Kind == KindIntent {
				l.failedIntents = append(l.failedIntents, req.rec.Index)
			}
		}
		l.stats.writeErrors.Add(1)
		return l.failBatch(reqs, fmt.Errorf("audit append: %w", err))
	}
	l.settled.Add(1)
	l.setWriteError(nil)
	l.front, l.scratch = front, l.front
	if th != nil {
		l.tree.Store(th)
	}
	l.newKey = nil
	l.size.Store(front.size)
	l.stats.batches.Add(1)
	l.stats.records.Add(int64(n))
	if cp != nil {
		l.stats.checkpoints.Add(1)
		l.cpSize, l.cpTime = cp.Size, cp.Time
		l.mu.Lock()
		l.latest = cp
		l.mu.Unlock()
		if l.cfg.Sink != nil {
			if now.Sub(l.lastSink) >= l.cfg.SinkInterval {
				l.lastSink, l.sinkDue = now, false
				l.toSink(cp)
			} else {
				l.sinkDue = true // run exports it when the interval ends
			}
		}
	}
	for _, req := range reqs {
		if req.ok {
			l.answer(req, nil)
		}
	}
	return nil
}

// sign makes the checkpoint for front at time now. It carries
// [rotationsExtension]: this log records every change of its signing key.
func (l *Log) sign(front *frontier, now time.Time) (*Checkpoint, error) {
	c := &Checkpoint{Origin: l.cfg.Origin, Size: front.size, Root: front.root(), Time: now.UTC()}
	body := append(checkpointBody(c.Origin, c.Size, c.Root, c.Time), rotationsExtension+"\n"...)
	msg, err := note.Sign(&note.Note{Text: string(body)}, l.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	c.Note = msg
	c.KeyID = fmt.Sprintf("%s+%08x", l.cfg.Signer.Name(), l.cfg.Signer.KeyHash())
	return c, nil
}

// toSink hands cp to the sink goroutine, replacing a checkpoint still
// waiting there.
func (l *Log) toSink(cp *Checkpoint) {
	select {
	case l.sinkCh <- cp:
		return
	default:
	}
	select {
	case <-l.sinkCh:
	default:
	}
	l.sinkCh <- cp
}

func (l *Log) runSink(ctx context.Context) {
	defer close(l.sinkDone)
	for cp := range l.sinkCh {
		ectx, cancel := context.WithTimeout(ctx, l.cfg.WriteTimeout)
		err := l.cfg.Sink.Export(ectx, cp)
		cancel()
		if err != nil {
			l.log.ErrorContext(ctx, "audit checkpoint export failed", "origin", cp.Origin, "size", cp.Size, "error", err)
		}
	}
}

// runRetention prunes hourly when a retention is configured.
func (l *Log) runRetention(ctx context.Context) {
	defer close(l.bgDone)
	if l.cfg.Retention <= 0 && l.cfg.InputRetention <= 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if l.cfg.InputRetention > 0 {
			if _, err := l.PruneInputs(ctx, l.cfg.Now().Add(-l.cfg.InputRetention)); err != nil && ctx.Err() == nil {
				l.log.ErrorContext(ctx, "audit input retention failed", "origin", l.cfg.Origin, "error", err)
			}
		}
		if l.cfg.Retention > 0 {
			if _, err := l.Prune(ctx, l.cfg.Now().Add(-l.cfg.Retention)); err != nil && ctx.Err() == nil {
				l.log.ErrorContext(ctx, "audit retention failed", "origin", l.cfg.Origin, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Unpaired returns the intents that have no outcome yet, oldest first. After
// a crash the broker looks each one up (idempotency record in the target
// database) and appends the missing outcome with Result.Recovered set and
// IntentIndex pointing at the intent. While the log runs, the intents of
// its own calls whose outcome could not be appended are [Log.Stranded]'s;
// the others may still be running.
//
// Each intent's stored bytes are checked against the log's tree (an
// inclusion proof against the root the log holds in memory): an intent
// altered in the store is an error wrapping [ErrRecordAltered], never an
// answer. Intents the log's tree does not hold yet (committed while the call
// ran) are left out.
func (l *Log) Unpaired(ctx context.Context) ([]Record, error) {
	raw, err := l.store.Unpaired(ctx, l.cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("unpaired intents: %w", err)
	}
	th := l.tree.Load()
	out := make([]Record, 0, len(raw))
	leaves := make([]tlog.Hash, 0, len(raw))
	idx := make([]int64, 0, len(raw))
	for _, data := range raw {
		r, err := DecodeRecord(data)
		if err != nil {
			return nil, fmt.Errorf("unpaired intents: %w", err)
		}
		if r.Kind != KindIntent {
			return nil, fmt.Errorf("unpaired intents: %w: the store lists record %d, a %s, as an open intent", ErrRecordAltered, r.Index, r.Kind)
		}
		if r.Index >= th.size {
			continue
		}
		out = append(out, *r)
		idx = append(idx, r.Index)
		leaves = append(leaves, LeafHash(data))
	}
	if err := l.checkRecords(ctx, th, idx, leaves); err != nil {
		return nil, fmt.Errorf("unpaired intents: %w", err)
	}
	return out, nil
}

// ErrRecordAltered is returned (wrapped) by [Log.Unpaired] and [Log.Inputs]
// when a stored record's bytes (or the stored tree hashes that prove it) do
// not match the tree the log holds: the store was altered.
var ErrRecordAltered = errors.New("stored audit record does not match the log's tree")

// checkRecords checks that leaves[i] is the leaf hash of record idx[i] in
// the tree th, reading the proof hashes from the store in a few batched
// reads.
func (l *Log) checkRecords(ctx context.Context, th *treeHead, idx []int64, leaves []tlog.Hash) error {
	const chunk = 1024
	for start := 0; start < len(idx); start += chunk {
		end := min(start+chunk, len(idx))
		var need []int64
		collect := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			need = append(need, ix...)
			return make([]tlog.Hash, len(ix)), nil
		})
		for _, i := range idx[start:end] {
			if _, err := tlog.ProveRecord(th.size, i, collect); err != nil {
				return fmt.Errorf("prove record %d: %w", i, err)
			}
		}
		slices.Sort(need)
		need = slices.Compact(need)
		hashes, err := l.store.ReadHashes(ctx, l.cfg.Origin, need)
		if err != nil {
			return fmt.Errorf("read proof hashes: %w", err)
		}
		cache := make(map[int64]tlog.Hash, len(need))
		for k, x := range need {
			cache[x] = hashes[k]
		}
		cached := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ix))
			for k, x := range ix {
				out[k] = cache[x]
			}
			return out, nil
		})
		for k, i := range idx[start:end] {
			p, err := tlog.ProveRecord(th.size, i, cached)
			if err != nil {
				return fmt.Errorf("prove record %d: %w", i, err)
			}
			if tlog.CheckRecord(p, th.size, th.root, i, leaves[start+k]) != nil {
				return fmt.Errorf("%w: record %d (its bytes or the tree hashes on its path were changed in the store)", ErrRecordAltered, i)
			}
		}
	}
	return nil
}

// Inputs calls fn for each record at or after since that has a stored
// decision input, in index order (for policy replay). fn's input slice is
// only valid during the call.
//
// Records are read a page at a time (inputsPage; a store that implements
// [InputsAfterStore] resumes each page after the last index), and every record of a
// page is checked against the log's tree (inclusion proofs against the root
// the log holds in memory) before fn sees any of them, so memory stays
// bounded by a page however long the log. An altered record is an error
// wrapping [ErrRecordAltered] (fn may have seen the pages before it).
// Records the log's tree does not hold yet (committed while the call ran)
// are left out.
func (l *Log) Inputs(ctx context.Context, since time.Time, fn func(Record, []byte) error) error {
	th := l.tree.Load()
	type item struct {
		r           Record
		data, input []byte
	}
	var d recordDecoder
	last := int64(-1)
	read := func(fn func(record, input []byte) error) error {
		if s, ok := l.store.(InputsAfterStore); ok {
			return s.InputsAfter(ctx, l.cfg.Origin, since, last, inputsPage, fn)
		}
		return l.store.Inputs(ctx, l.cfg.Origin, since, fn) // from the start again, skipping
	}
	for {
		var page []item
		full := false
		err := read(func(data, input []byte) error {
			var r Record
			if err := d.decode(&r, data); err != nil {
				return err
			}
			switch {
			case r.Index <= last:
				return nil // handed out on an earlier page
			case r.Index >= th.size:
				return errPageDone // not in the tree yet, nor anything after it
			}
			page = append(page, item{r, slices.Clone(data), slices.Clone(input)})
			if len(page) == inputsPage {
				full = true
				return errPageDone
			}
			return nil
		})
		if err != nil && !errors.Is(err, errPageDone) {
			return fmt.Errorf("audit inputs: %w", err)
		}
		idx := make([]int64, len(page))
		leaves := make([]tlog.Hash, len(page))
		for k := range page {
			idx[k], leaves[k] = page[k].r.Index, LeafHash(page[k].data)
		}
		if err := l.checkRecords(ctx, th, idx, leaves); err != nil {
			return fmt.Errorf("audit inputs: %w", err)
		}
		for k := range page {
			if err := l.checkInput(&page[k].r, page[k].input); err != nil {
				return fmt.Errorf("audit inputs: %w", err)
			}
		}
		for k := range page {
			if err := fn(page[k].r, page[k].input); err != nil {
				return err
			}
		}
		if !full {
			return nil
		}
		last = page[len(page)-1].r.Index
	}
}

// checkInput checks a stored decision input against the hash its record
// (already proven against the tree) holds: input_hmac under the parameter
// key it names, or, for records written before it, input_sha256.
func (l *Log) checkInput(r *Record, input []byte) error {
	keys := append([]ParamKey{l.cfg.ParamKey}, l.cfg.PreviousParamKeys...)
	ok, err := CheckInput(keys, r, input)
	switch {
	case errors.Is(err, ErrUnknownParamKey):
		return fmt.Errorf("record %d: %w: the input_hmac names a parameter key this log does not hold (configure the earlier parameter key as a previous one)", r.Index, err)
	case err != nil:
		return fmt.Errorf("%w: record %d: a decision input is stored for it: %w", ErrRecordAltered, r.Index, err)
	case !ok:
		field := "input_hmac"
		if r.InputHMAC == "" {
			field = "input_sha256"
		}
		return fmt.Errorf("%w: record %d: its stored decision input does not match the record's %s (the input was changed in the store)", ErrRecordAltered, r.Index, field)
	}
	return nil
}

// inputsPage is how many records [Log.Inputs] reads, proves and hands out
// at a time.
var inputsPage = 1024

// errPageDone ends a store read early.
var errPageDone = errors.New("page done")

// Prune deletes the bodies (and inputs) of the oldest records: every record
// before the first one whose time is at or after before, but never a record
// not yet covered by a checkpoint and never an intent still waiting for its
// outcome (nor anything after it). Tree hashes, checkpoints and keys stay,
// so what remains still verifies. It returns how many records it pruned.
func (l *Log) Prune(ctx context.Context, before time.Time) (int64, error) {
	cut, err := l.store.IndexAt(ctx, l.cfg.Origin, before)
	if err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	if latest, err := l.Latest(ctx); err == nil {
		cut = min(cut, latest.Size)
	} else {
		return 0, nil
	}
	open, err := l.Unpaired(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	if i := slices.IndexFunc(open, func(r Record) bool { return r.Index < cut }); i >= 0 {
		cut = open[i].Index
	}
	n, err := l.store.Prune(ctx, l.cfg.Origin, cut)
	if err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	return n, nil
}

// PruneInputs deletes the decision inputs of records older than before and
// returns how many it deleted. Records and their InputSHA256 stay.
func (l *Log) PruneInputs(ctx context.Context, before time.Time) (int64, error) {
	n, err := l.store.PruneInputs(ctx, l.cfg.Origin, before)
	if err != nil {
		return 0, fmt.Errorf("audit prune inputs: %w", err)
	}
	return n, nil
}
