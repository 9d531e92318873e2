package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/web/api"
)

func cmdAuditExport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit export", "sqlgate audit export -o FILE [--from N] [--to N] [--origin ORIGIN]")
	broker := brokerFlag(fs)
	out := fs.String("o", "", "write the bundle here")
	from := fs.Int64("from", 0, "first record index")
	to := fs.Int64("to", 0, "end record index, exclusive (0: the latest checkpoint)")
	origin := fs.String("origin", "", "keep only the log of this origin (one instance of a shared control database); the broker sends every origin and the CLI keeps this one")
	trusted := fs.String("trusted-checkpoint", "", "the auditor's saved checkpoints (a file, or a directory of *.checkpoint and *.note files): the bundle carries consistency proofs from their sizes, so verify --trusted-checkpoint can check copies older than its first record")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate audit export -o FILE"); err != nil {
		return err
	}
	var sizes map[string][]int64
	if *trusted != "" {
		cps, _, err := loadTrusted(*trusted, *origin)
		if err != nil {
			return err
		}
		sizes = trustedSizes(cps)
	}
	if *out == "" {
		return usagef("-o FILE is required")
	}
	if *from < 0 || *to < 0 || (*to > 0 && *to <= *from) {
		return usagef("--from and --to must not be negative, and --to (exclusive) must be above --from (or 0 for the latest checkpoint)")
	}
	c, err := e.client(*broker)
	if err != nil {
		return err
	}
	// Written beside the destination and renamed on success, so a failed
	// run leaves neither a partial bundle nor a damaged earlier one.
	dst, err := createOutput(*out, ".sqlgate-audit-*.bundle")
	if err != nil {
		return err
	}
	defer dst.discard()
	if *origin == "" {
		err = exportProven(ctx, c, dst, *from, *to, sizes)
	} else {
		err = exportOrigin(ctx, c, dst, *origin, *from, *to, sizes)
	}
	if err != nil {
		return err
	}
	if err := dst.commit(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "audit bundle written to %s; verify it offline with: sqlgate audit verify --bundle %s --key <verifier key>\n", *out, *out)
	return nil
}

// exportOrigin writes to w the bundle of the log of origin only: the
// broker's export holds every origin of the control database, so it is
// downloaded to a temporary file and written again with that origin (the
// same bytes the broker would write for it: keys, frontier, checkpoints,
// consistency proof and records).
func exportOrigin(ctx context.Context, c *api.Client, w io.Writer, origin string, from, to int64, sizes map[string][]int64) error {
	path, proofs, cleanup, err := downloadProven(ctx, c, from, to, sizes)
	if err != nil {
		return err
	}
	defer cleanup()
	b, closeBundle, err := openBundleFile(path, "")
	if err != nil {
		return err
	}
	defer closeBundle()
	if err := holdsOrigin(ctx, b, origin, "the broker"); err != nil {
		return err
	}
	return audit.WriteBundle(ctx, w, b, audit.BundleOptions{Origin: origin, ProofSizes: proofs})
}

// trustedSizes returns the distinct tree sizes of the trusted copies cps
// by origin (read, not checked: a copy that does not verify fails
// verification anyway).
func trustedSizes(cps [][]byte) map[string][]int64 {
	by := map[string][]int64{}
	for _, cp := range cps {
		if c, err := audit.ParseCheckpoint(cp); err == nil && c.Size > 0 {
			by[c.Origin] = append(by[c.Origin], c.Size)
		}
	}
	for o, sizes := range by {
		slices.Sort(sizes)
		by[o] = slices.Compact(sizes)
	}
	return by
}

// Consistency proofs for trusted copies. A copy below the first record the
// broker's export holds of its origin is checked only through a proof from
// its own size ([audit.Verify]); one at or after it is checked by hashing
// the records and needs none. Up to [audit.MaxProofSizes] distinct sizes are
// all sent (the broker writes the proofs from those below each origin's
// first record only); with more, the CLI first asks where each origin's
// export starts ([exportStarts]) and sends only the sizes below it. More
// copies below the start than one export carries is an error: none is left
// out.

// distinctSizes returns the sizes of by, all origins together, sorted and
// without repeats.
func distinctSizes(by map[string][]int64) []int64 {
	var all []int64
	for _, sizes := range by {
		all = append(all, sizes...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// sizesBelow returns the sizes of by below where each origin's export
// starts (starts), sorted and without repeats; an origin the export does
// not hold is skipped (verification fails its copies: origin_missing).
func sizesBelow(by map[string][]int64, starts map[string]int64) ([]int64, error) {
	var need []int64
	var below []string
	for _, o := range slices.Sorted(maps.Keys(by)) {
		start, ok := starts[o]
		if !ok {
			continue
		}
		n := 0
		for _, size := range by[o] {
			if size < start {
				need = append(need, size)
				n++
			}
		}
		if n > 0 {
			below = append(below, fmt.Sprintf("%d of %s, whose export starts at record %d", n, o, start))
		}
	}
	slices.Sort(need)
	need = slices.Compact(need)
	if len(need) > audit.MaxProofSizes {
		return nil, fmt.Errorf("--trusted-checkpoint: too many trusted copies for one request: %d copies precede the first record the broker exports of their origin (%s); "+
			"each is checked only through a consistency proof from its own size, and one export carries at most %d: give --trusted-checkpoint at most %d of those per run "+
			"(copies at or after the first record are checked by hashing the records, however many)",
			len(need), strings.Join(below, "; "), audit.MaxProofSizes, audit.MaxProofSizes)
	}
	return need, nil
}

// provenAttempts bounds how often [downloadProven] asks again when
// retention pruning keeps moving the export's start.
const provenAttempts = 3

// downloadProven downloads the broker's export of records [from, to) of
// every origin into a temporary file, with the consistency proofs the
// trusted copies of the sizes (by origin) need. It returns the file's path,
// the sizes the export was asked for proofs from, and a function that
// removes the file.
//
// With more sizes than one export carries, the sizes sent are those below
// where each origin's export started a moment before. Retention pruning in
// between moves a start past copies sent without a proof, which
// verification would report as unchecked although the broker could have
// proved them: the download is checked for that and asked again from its
// own starts, at most [provenAttempts] times.
func downloadProven(ctx context.Context, c *api.Client, from, to int64, by map[string][]int64) (string, []int64, func(), error) {
	all := distinctSizes(by)
	if len(all) <= audit.MaxProofSizes {
		path, cleanup, err := downloadBundle(ctx, c, from, to, all)
		return path, all, cleanup, err
	}
	starts, err := exportStarts(ctx, c, from)
	if err != nil {
		return "", nil, nil, err
	}
	for attempt := 1; ; attempt++ {
		need, err := sizesBelow(by, starts)
		if err != nil {
			return "", nil, nil, err
		}
		path, cleanup, err := downloadBundle(ctx, c, from, to, need)
		if err != nil {
			return "", nil, nil, err
		}
		got, err := bundleStarts(ctx, path)
		if err != nil {
			cleanup()
			return "", nil, nil, err
		}
		unproved, err := sizesBelow(by, got)
		if err == nil && !hasAll(need, unproved) {
			err = errPrunedDuringExport
		}
		if err == nil {
			return path, need, cleanup, nil
		}
		cleanup()
		if !errors.Is(err, errPrunedDuringExport) || attempt == provenAttempts {
			return "", nil, nil, err
		}
		starts = got
	}
}

// errPrunedDuringExport: the export started after trusted copies it was
// sent no proof for, [provenAttempts] times in a row.
var errPrunedDuringExport = fmt.Errorf("--trusted-checkpoint: retention pruned the log while it was exported, %d times in a row, past trusted copies the export was asked no consistency proof for: run the command again", provenAttempts)

// hasAll reports whether the sorted sizes of have include every size of want.
func hasAll(have, want []int64) bool {
	for _, n := range want {
		if _, ok := slices.BinarySearch(have, n); !ok {
			return false
		}
	}
	return true
}

// exportProven writes the broker's export of records [from, to), with the
// consistency proofs the trusted copies of the sizes (by origin) need, to
// w: straight from the broker when every size fits one request, through
// [downloadProven] otherwise.
func exportProven(ctx context.Context, c *api.Client, w io.Writer, from, to int64, by map[string][]int64) error {
	if all := distinctSizes(by); len(all) <= audit.MaxProofSizes {
		return exportLog(ctx, c, w, from, to, all)
	}
	path, _, cleanup, err := downloadProven(ctx, c, from, to, by)
	if err != nil {
		return err
	}
	defer cleanup()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// exportStarts returns, by origin, the first record of the broker's export
// of the records from `from` on: it exports one record, whose bundle starts
// each origin where the whole export does (the origin's first retained
// record, or from).
func exportStarts(ctx context.Context, c *api.Client, from int64) (map[string]int64, error) {
	to := from + 1
	if to <= 0 {
		to = 0 // from is the largest index: the export from it is as short
	}
	path, cleanup, err := downloadBundle(ctx, c, from, to, nil)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return bundleStarts(ctx, path)
}

// bundleStarts returns, by origin, the first record the bundle file at path
// holds.
func bundleStarts(ctx context.Context, path string) (map[string]int64, error) {
	b, closeBundle, err := openBundleFile(path, "")
	if err != nil {
		return nil, err
	}
	defer closeBundle()
	origins, err := b.Origins(ctx)
	if err != nil {
		return nil, err
	}
	starts := make(map[string]int64, len(origins))
	for _, o := range origins {
		first, _, err := b.Bounds(ctx, o)
		if err != nil {
			return nil, err
		}
		starts[o] = first
	}
	return starts, nil
}

// holdsOrigin is an error naming the origins b holds when it holds no log
// of origin: verifying or exporting nothing must not pass for a check.
func holdsOrigin(ctx context.Context, b *audit.Bundle, origin, what string) error {
	held, err := b.Origins(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(held, origin) {
		return nil
	}
	slices.Sort(held)
	return fmt.Errorf("--origin %s: %s holds no log of that origin (it holds: %s)", origin, what, joinOrNone(held))
}

func joinOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// loadTrusted reads --trusted-checkpoint and counts its checkpoints by
// origin. With --origin, copies of other origins are not checked: a path
// holding none of origin is an error, as it would check nothing.
func loadTrusted(path, origin string) ([][]byte, map[string]int, error) {
	if what := notACheckpoint(path); what != "" {
		return nil, nil, fmt.Errorf("--trusted-checkpoint %s is %s, not a checkpoint: give a checkpoint file (the sink's *.checkpoint, one written by verify --save-checkpoint) or a directory of them", path, what)
	}
	cps, err := audit.LoadCheckpoints(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--trusted-checkpoint: %w", err)
	}
	origins := map[string]int{}
	for _, cp := range cps {
		// Unchecked: the origin only; verification checks the signature
		// and fails a copy that is not a checkpoint.
		if c, err := audit.ParseCheckpoint(cp); err == nil {
			origins[c.Origin]++
		}
	}
	if origin != "" && origins[origin] == 0 {
		return nil, nil, fmt.Errorf("--trusted-checkpoint %s holds no checkpoint of origin %s (its %d checkpoints are of: %s): nothing would be checked against a trusted copy",
			path, origin, len(cps), joinOrNone(slices.Sorted(maps.Keys(origins))))
	}
	if origin != "" {
		// A sink shared by several instances holds their copies too, which
		// the key of this one cannot check: only this origin's count (a
		// copy that is not a checkpoint stays, and fails).
		cps = slices.DeleteFunc(cps, func(cp []byte) bool {
			c, err := audit.ParseCheckpoint(cp)
			return err == nil && c.Origin != origin
		})
		origins = map[string]int{origin: origins[origin]}
	}
	return cps, origins, nil
}

// notACheckpoint names what the file at path is when it is a file that is
// not a checkpoint and is recognized: an audit bundle or a zip archive
// (an evidence archive); "" otherwise (a directory, a checkpoint).
func notACheckpoint(path string) string {
	if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read-only
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case strings.HasPrefix(string(head), `{"format":"`+audit.BundleFormat+`"}`):
		return "an audit bundle (verify it with --bundle)"
	case strings.HasPrefix(string(head), "PK\x03\x04"):
		return "a zip archive (an evidence archive? unpack it and give its checkpoints/ directory)"
	}
	return ""
}

// warnUntrusted writes a warning for each origin that no trusted copy
// was checked against although --trusted-checkpoint was given: its log
// could have been rolled back or forked unnoticed. copies counts the
// copies of each origin the path holds.
func warnUntrusted(w io.Writer, path string, origins []string, copies map[string]int) {
	for _, o := range origins {
		if n := copies[o]; n > 0 {
			fmt.Fprintf(w, "WARNING: origin %s: none of the %d checkpoints of it in --trusted-checkpoint %s was checked against its log (beyond the checked range, or no consistency proof reached them): a rollback or fork of its log would not be detected\n", o, n, path)
			continue
		}
		fmt.Fprintf(w, "WARNING: origin %s: --trusted-checkpoint %s holds no checkpoint of it: a rollback or fork of its log would not be detected\n", o, path)
	}
}

// trustedCopies counts the trusted checkpoint copies a verification
// compared, every origin together.
func trustedCopies(rep *audit.Report) int {
	n := 0
	for _, o := range rep.Origins {
		n += o.Trusted
	}
	return n
}

// warnNoTrustedCopy writes the warning for a log compared with no
// checkpoint copy kept out of the operator's reach (without
// --trusted-checkpoint: with it, [warnUntrusted] names each origin). It goes
// to stderr, so stdout stays the report.
func warnNoTrustedCopy(w io.Writer) {
	fmt.Fprintf(w, "WARNING: %s\n", evidence.NoTrustedCopy)
}

// keyFlags registers the trusted-key flags shared by verify and prove.
type keyFlags struct {
	keys     multiFlag
	keysFile *string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.Var(&k.keys, "key", "trusted checkpoint verifier key (note format); repeat for every key generation")
	k.keysFile = fs.String("keys-file", "", "file of trusted verifier keys, one per line")
}

// load returns the trusted keys. A key that is not a verifier key is a
// usage error naming the flag (and the line of --keys-file).
func (k *keyFlags) load() ([]string, error) {
	keys := append([]string(nil), k.keys...)
	for _, key := range k.keys {
		if err := checkVerifierKey("--key", key); err != nil {
			return nil, err
		}
	}
	if *k.keysFile != "" {
		b, err := os.ReadFile(*k.keysFile)
		if err != nil {
			return nil, fmt.Errorf("read --keys-file: %w", err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				if err := checkVerifierKey(fmt.Sprintf("--keys-file %s line %d", *k.keysFile, i+1), line); err != nil {
					return nil, err
				}
				keys = append(keys, line)
			}
		}
	}
	return keys, nil
}

// checkVerifierKey is a usage error, naming where the key came from, for a
// key that is not a verifier key in note format.
func checkVerifierKey(where, key string) error {
	if _, err := audit.NewVerifiers(key); err != nil {
		return usagef("%s: not a verifier key (want NAME+HASH+KEY, as printed by sqlgate audit keygen or in audit_verifier_key): %v", where, err)
	}
	return nil
}

// parseKeyed parses an audit command's flags, checks --output and loads the
// trusted keys. A command that cannot run without a key says why in
// required; "" makes the keys optional.
func parseKeyed(fs *flag.FlagSet, args []string, kf *keyFlags, output *string, required string) (pos, keys []string, err error) {
	if pos, err = parse(fs, args); err != nil {
		return nil, nil, err
	}
	if err := checkOutput(*output); err != nil {
		return nil, nil, err
	}
	if keys, err = kf.load(); err != nil {
		return nil, nil, err
	}
	if required != "" && len(keys) == 0 {
		return nil, nil, usagef("--key or --keys-file is required: %s", required)
	}
	return pos, keys, nil
}

func cmdAuditVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit verify", "sqlgate audit verify --key VKEY [--bundle FILE] [--origin ORIGIN] [--from N --to N] [--trusted-checkpoint FILE|DIR] [--save-checkpoint DIR] [--output json]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	bundlePath := fs.String("bundle", "", "verify this exported bundle offline (default: export one from the broker first)")
	from := fs.Int64("from", 0, "first record index to check")
	to := fs.Int64("to", 0, "end record index, exclusive (0: to the end)")
	trusted := fs.String("trusted-checkpoint", "", "a saved checkpoint file, or a directory of them (*.checkpoint: the write-once sink or --save-checkpoint; *.note: an unpacked evidence archive): the log must extend each")
	save := fs.String("save-checkpoint", "", "when the log verifies, save each origin's newest verified checkpoint in this directory (DIR/<origin>/<size>.checkpoint, never replacing a copy), for a later --trusted-checkpoint DIR")
	origin := fs.String("origin", "", "verify only the log of this origin (one instance of a shared control database); keys of other origins are then not required")
	selfOnly := fs.Bool("no-trusted-key", false, "without --key: check only that the log is consistent with the key history it holds itself (proves nothing against whoever can write the log)")
	var kf keyFlags
	kf.register(fs)
	pos, keys, err := parseKeyed(fs, args, &kf, output, "")
	if err != nil {
		return err
	}
	v := auditVerify{
		e: e, broker: *broker, output: *output, bundle: *bundlePath, trusted: *trusted, save: *save, origin: *origin,
		opts: audit.VerifyOptions{Keys: keys, From: *from, To: *to, Origin: *origin},
	}
	err = v.run(ctx, pos, *selfOnly)
	if err != nil && *output == "json" && !errors.Is(err, errSilent) {
		// stdout is one JSON document whatever happens: a bundle that
		// cannot be read is a verification that did not pass.
		_ = printJSON(e.stdout, map[string]any{"ok": false, "error": err.Error()})
	}
	return err
}

// auditVerify is one run of audit verify.
type auditVerify struct {
	e                                             *env
	broker, output, bundle, trusted, save, origin string
	opts                                          audit.VerifyOptions
}

func (v *auditVerify) run(ctx context.Context, pos []string, selfOnly bool) error {
	e := v.e
	if err := wantArgs(pos, 0, "sqlgate audit verify"); err != nil {
		return err
	}
	switch {
	case selfOnly && len(v.opts.Keys) > 0:
		return usagef("--no-trusted-key and --key/--keys-file exclude each other")
	case !selfOnly && len(v.opts.Keys) == 0:
		return usagef("--key or --keys-file is required: without a trusted key anyone who can write the log can re-sign it, " +
			"so the check would prove nothing (dev: audit_verifier_key in dev.json; --no-trusted-key checks only that the log is self-consistent)")
	}
	var copies map[string]int
	var sizes map[string][]int64
	if v.trusted != "" {
		var err error
		if v.opts.Trusted, copies, err = loadTrusted(v.trusted, v.origin); err != nil {
			return err
		}
		sizes = trustedSizes(v.opts.Trusted)
	}
	// Downloaded from the broker, the bundle carries the consistency proofs
	// from the trusted copies' sizes; a --bundle file has those it was
	// exported with (audit export --trusted-checkpoint).
	b, closeBundle, err := openBundle(ctx, e, v.broker, v.bundle, sizes)
	if err != nil {
		return err
	}
	defer closeBundle()
	if v.origin != "" {
		what := "the broker"
		if v.bundle != "" {
			what = v.bundle
		}
		if err := holdsOrigin(ctx, b, v.origin, what); err != nil {
			return err
		}
	}
	rep, err := audit.Verify(ctx, b, v.opts)
	if err != nil {
		return err
	}
	var untrusted []string
	if v.trusted != "" {
		for _, o := range rep.Origins {
			if o.Trusted == 0 {
				untrusted = append(untrusted, o.Origin)
			}
		}
	}
	notes := e.stdout
	if v.output == "json" {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
		notes = e.stderr // stdout stays one JSON document
	} else if err := rep.WriteText(e.stdout); err != nil {
		return err
	}
	warnUntrusted(notes, v.trusted, untrusted, copies)
	if v.trusted == "" && rep.OK() && trustedCopies(rep) == 0 {
		warnNoTrustedCopy(e.stderr)
	}
	if v.save != "" {
		if err := saveCheckpoints(ctx, notes, v.save, rep); err != nil {
			return err
		}
	}
	if !rep.OK() {
		return errSilent
	}
	return nil
}

// saveCheckpoints saves the newest verified checkpoint of each origin of a
// report that passed into dir, as the write-once sink lays them out
// (audit.DirSink): never replacing a copy, so a different checkpoint of a
// size saved before is an error (a fork). Nothing is saved from a log that
// did not verify.
func saveCheckpoints(ctx context.Context, w io.Writer, dir string, rep *audit.Report) error {
	if !rep.OK() {
		fmt.Fprintln(w, "--save-checkpoint: nothing saved: the log did not verify")
		return nil
	}
	sink, err := audit.NewDirSink(dir)
	if err != nil {
		return fmt.Errorf("--save-checkpoint: %w", err)
	}
	for _, o := range rep.Origins {
		if o.Latest == nil {
			continue
		}
		if err := sink.Export(ctx, o.Latest); err != nil {
			if errors.Is(err, audit.ErrCheckpointConflict) {
				return fmt.Errorf("--save-checkpoint: %s already holds a different checkpoint of %s of size %d: the log was forked since it was saved (keep both for the investigation): %w",
					dir, o.Origin, o.Latest.Size, err)
			}
			return fmt.Errorf("--save-checkpoint: %w", err)
		}
		fmt.Fprintf(w, "checkpoint of %s, size %d, saved to %s: pass --trusted-checkpoint %s next time\n", o.Origin, o.Latest.Size, sink.Path(o.Origin, o.Latest.Size), dir)
	}
	return nil
}

// downloadBundle exports records [from, to) of every origin from the
// broker into a temporary file, with consistency proofs from the tree sizes
// proofs. The returned function removes it.
func downloadBundle(ctx context.Context, c *api.Client, from, to int64, proofs []int64) (string, func(), error) {
	tmp, err := os.CreateTemp("", "sqlgate-audit-*.bundle")
	if err != nil {
		return "", nil, err
	}
	path := tmp.Name()
	cleanup := func() { _ = os.Remove(path) }
	err = exportLog(ctx, c, tmp, from, to, proofs)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("download the log: %w", err)
	}
	return path, cleanup, nil
}

// exportLog writes the broker's export of records [from, to), with
// consistency proofs from the tree sizes proofs, to w. A broker that refuses
// the request as too large (HTTP 431: one that takes the sizes in the URL
// only; 413) is named for it.
func exportLog(ctx context.Context, c *api.Client, w io.Writer, from, to int64, proofs []int64) error {
	err := c.AuditExportProofs(ctx, w, from, to, proofs)
	var se *api.StatusError
	if len(proofs) > 0 && errors.As(err, &se) && (se.Status == http.StatusRequestHeaderFieldsTooLarge || se.Status == http.StatusRequestEntityTooLarge) {
		return fmt.Errorf("too many trusted copies for one request: the broker refused the request for consistency proofs from the sizes of %d --trusted-checkpoint copies (HTTP %d; a broker that takes them in the URL only refuses a few thousand): "+
			"give --trusted-checkpoint fewer copies, or upgrade the broker", len(proofs), se.Status)
	}
	return err
}

// openBundle opens the bundle file at path, or downloads the whole log from
// the broker into a temporary file when path is empty, with the consistency
// proofs the trusted copies of the sizes (by origin) need ([downloadProven]).
// The returned function closes it and removes a downloaded file.
func openBundle(ctx context.Context, e *env, broker, path string, sizes map[string][]int64) (*audit.Bundle, func(), error) {
	if path != "" {
		return openBundleFile(path, path)
	}
	c, err := e.client(broker)
	if err != nil {
		return nil, nil, err
	}
	path, _, cleanup, err := downloadProven(ctx, c, 0, 0, sizes)
	if err != nil {
		return nil, nil, err
	}
	b, closeBundle, err := openBundleFile(path, "")
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return b, func() { closeBundle(); cleanup() }, nil
}

// openBundleFile opens the bundle file at path; an error names it as named
// ("": the broker's export). The returned function closes it.
func openBundleFile(path, named string) (*audit.Bundle, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := audit.OpenBundle(f)
	if err != nil {
		_ = f.Close()
		if named != "" {
			return nil, nil, fmt.Errorf("%s: %w", named, err)
		}
		return nil, nil, fmt.Errorf("the broker's export: %w", err)
	}
	return b, func() { _ = f.Close() }, nil
}

func cmdAuditEvidence(ctx context.Context, e *env, args []string) (err error) {
	fs := newFlags(e, "audit evidence", "sqlgate audit evidence --from DATE --to DATE --key VKEY -o FILE.zip [--bundle FILE] [--origin ORIGIN] [--trusted-checkpoint FILE|DIR] [--sign-key FILE]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	bundlePath := fs.String("bundle", "", "derive the evidence from this exported bundle (default: export the log from the broker first)")
	fromFlag := fs.String("from", "", "start of the period, inclusive: YYYY-MM-DD (UTC midnight), RFC 3339, now, or a duration from now (-24h)")
	toFlag := fs.String("to", "", "end of the period, exclusive: the same forms as --from")
	out := fs.String("o", "", "write the evidence archive (zip) here")
	trusted := fs.String("trusted-checkpoint", "", "a saved checkpoint file, or a directory of them (*.checkpoint, *.note): the log must extend each")
	origin := fs.String("origin", "", "the evidence of this origin's log only (one instance of a shared control database, as the dashboard writes it)")
	signKey := fs.String("sign-key", "", "sign the manifest with this private key (sqlgate audit keygen), so the archive shows who produced it")
	var kf keyFlags
	kf.register(fs)
	pos, keys, err := parseKeyed(fs, args, &kf, output, "evidence is only as good as the key you trust (dev: audit_verifier_key in dev.json)")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && *output == "json" {
			// stdout is one JSON document whatever happens.
			_ = printJSON(e.stdout, map[string]any{"ok": false, "error": err.Error()})
		}
	}()
	if err := wantArgs(pos, 0, "sqlgate audit evidence"); err != nil {
		return err
	}
	now := time.Now()
	from, err := parsePeriodBound("--from", *fromFlag, now)
	if err != nil {
		return err
	}
	to, err := parsePeriodBound("--to", *toFlag, now)
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return usagef("--from must be before --to")
	}
	if to.After(now) {
		// The log cannot cover what has not happened: the evidence would
		// look complete for a period that has not ended.
		return usagef("--to %s is in the future: the period must have ended (use now, or a date or time up to now)", *toFlag)
	}
	if *out == "" {
		return usagef("-o FILE.zip is required")
	}
	if *bundlePath != "" && sameFile(*out, *bundlePath) {
		return usagef("-o %s is the --bundle the evidence is read from: write the archive elsewhere", *out)
	}
	opts := evidence.Options{From: from, To: to, Verify: audit.VerifyOptions{Keys: keys, Origin: *origin}, Generator: "sqlgate audit evidence"}
	var signer audit.Signer
	if *signKey != "" {
		if signer, err = loadSignKey(*signKey); err != nil {
			return err
		}
		opts.Signer = signer
	}
	var trustedOrigins map[string]int
	var sizes map[string][]int64
	if *trusted != "" {
		if opts.Verify.Trusted, trustedOrigins, err = loadTrusted(*trusted, *origin); err != nil {
			return err
		}
		sizes = trustedSizes(opts.Verify.Trusted)
	}
	b, closeBundle, err := openBundle(ctx, e, *broker, *bundlePath, sizes)
	if err != nil {
		return err
	}
	defer closeBundle()
	if *origin != "" {
		what := "the broker"
		if *bundlePath != "" {
			what = *bundlePath
		}
		if err := holdsOrigin(ctx, b, *origin, what); err != nil {
			return err
		}
	}
	// Written beside the destination and renamed, so a failed run never
	// leaves an archive that looks complete.
	dst, err := createOutput(*out, ".sqlgate-evidence-*.zip")
	if err != nil {
		return err
	}
	defer dst.discard()
	m, err := evidence.Write(ctx, dst, b, opts)
	if err != nil {
		return err
	}
	if err := dst.commit(); err != nil {
		return err
	}
	var untrusted []string
	if *trusted != "" {
		// The whole log is verified: a copy of an origin is checked, or
		// the verification failed and nothing was written.
		for _, o := range m.Origins {
			if trustedOrigins[o.Origin] == 0 {
				untrusted = append(untrusted, o.Origin)
			}
		}
	}
	if *trusted == "" && m.Verification.TrustedCopies == 0 {
		warnNoTrustedCopy(e.stderr)
	}
	if *output == "json" {
		warnUntrusted(e.stderr, *trusted, untrusted, trustedOrigins) // stdout stays one JSON document
		return printJSON(e.stdout, m)
	}
	fmt.Fprintf(e.stdout, "evidence for %s to %s written to %s (the log verified: %d records)\n", m.Period.From, m.Period.To, *out, m.Verification.Records)
	for _, s := range m.Incomplete {
		fmt.Fprintf(e.stdout, "WARNING: %s\n", s)
	}
	warnUntrusted(e.stdout, *trusted, untrusted, trustedOrigins)
	for _, f := range m.Files {
		fmt.Fprintf(e.stdout, "  %-28s %12s  sha256 %s\n", f.Name, f.Count(), f.SHA256)
	}
	if signer != nil {
		fmt.Fprintf(e.stdout, "manifest signed by %s\n", signer.VerifierKey())
	}
	return nil
}

// sameFile reports whether the paths name one existing file.
func sameFile(a, b string) bool {
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	return err == nil && os.SameFile(ai, bi)
}

// loadSignKey reads a private key written by `sqlgate audit keygen`. Like
// ssh, it refuses a key file others may read.
func loadSignKey(path string) (audit.Signer, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--sign-key: %s may be read by others (mode %04o): chmod 600 it", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	signer, err := audit.NewSigner(string(b))
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %s: %w", path, err)
	}
	return signer, nil
}

// cmdAuditKeygen writes a key for signing evidence archives.
func cmdAuditKeygen(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit keygen", "sqlgate audit keygen --name NAME -o FILE")
	name := fs.String("name", "", "the key's name, shown with every signature: who signs (for example evidence.example.com/jane)")
	out := fs.String("o", "", "write the private key here (created 0600; an existing file is never replaced)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate audit keygen"); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return usagef("--name and -o are required")
	}
	skey, vkey, err := audit.GenerateKey(rand.Reader, *name)
	if err != nil {
		return usagef("--name %q: a key name is printable, without spaces or '+'", *name)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, skey); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "private key written to %s (keep it secret: it signs as %s)\nverifier key, for check-evidence --signer-key:\n%s\n", *out, *name, vkey)
	return nil
}

func cmdAuditCheckEvidence(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit check-evidence", "sqlgate audit check-evidence FILE.zip --key VKEY [--bundle FILE [--trusted-checkpoint FILE|DIR]] [--signer-key VKEY] [--require-signature] [--output json]")
	output := outputFlag(fs)
	var signers multiFlag
	fs.Var(&signers, "signer-key", "a further key trusted to sign the manifest (the log's --key already is); repeatable")
	require := fs.Bool("require-signature", false, "refuse an archive whose manifest no trusted key signed")
	bundlePath := fs.String("bundle", "", "the log bundle the archive was made from: write the archive again from the verified log and compare every file, row by row (the checkpoints vouch for the log, not for the archive's rows)")
	trusted := fs.String("trusted-checkpoint", "", "with --bundle: checkpoint copies kept out of the operator's reach (a file, or a directory of *.checkpoint and *.note files): the log must extend each")
	var kf keyFlags
	kf.register(fs)
	pos, keys, err := parseKeyed(fs, args, &kf, output, "the checkpoints are checked against the log's published verifier key")
	if err != nil {
		return err
	}
	for _, k := range signers {
		if err := checkVerifierKey("--signer-key", k); err != nil {
			return err
		}
	}
	if err := wantArgs(pos, 1, "sqlgate audit check-evidence FILE.zip"); err != nil {
		return err
	}
	if *trusted != "" && *bundlePath == "" {
		return usagef("--trusted-checkpoint needs --bundle: the copies are compared with the log the archive is written again from")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only
	info, err := f.Stat()
	if err != nil {
		return err
	}
	rep, err := evidence.Check(f, info.Size(), evidence.CheckOptions{Keys: keys, SignerKeys: signers, RequireSignature: *require})
	if err == nil && *bundlePath != "" {
		err = regenerateEvidence(ctx, f, info.Size(), rep, *bundlePath, *trusted, keys)
	}
	if errors.Is(err, evidence.ErrBadArchive) {
		fmt.Fprintf(e.stderr, "%s: %v\n", pos[0], err)
		return errSilent
	}
	if err != nil {
		return err
	}
	if *output == "json" {
		for _, w := range rep.Warnings {
			fmt.Fprintf(e.stderr, "WARNING: %s\n", w) // stdout stays one JSON document
		}
		return printJSON(e.stdout, rep)
	}
	m := rep.Manifest
	fmt.Fprintf(e.stdout, "%s checks: evidence for %s to %s, %d files match the manifest\n", pos[0], m.Period.From, m.Period.To, rep.Files)
	for i, o := range m.Origins {
		fmt.Fprintf(e.stdout, "  %s: records %d to %d, covered by a checkpoint of %d records signed by %s\n", o.Origin, o.First, o.End-1, o.CheckpointSize, rep.Checkpoints[i])
	}
	if rep.Regenerated {
		fmt.Fprintf(e.stdout, "  written again from the log in %s: every file compared matches, the populations are the log's\n", *bundlePath)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(e.stdout, "  note: %s\n", n)
	}
	for _, s := range m.Incomplete {
		fmt.Fprintf(e.stdout, "  WARNING: %s\n", s)
	}
	switch {
	case rep.SignedBy != "":
		fmt.Fprintf(e.stdout, "  manifest signed by %s\n", rep.SignedBy)
	case rep.Untrusted != "":
		fmt.Fprintf(e.stdout, "  manifest signed by %s, which you did not trust (--signer-key): the signature was not checked\n", rep.Untrusted)
	default:
		fmt.Fprintln(e.stdout, "  manifest not signed: the hashes show the files belong together, not who produced them")
	}
	for _, w := range rep.Warnings {
		if w == evidence.NoTrustedCopy {
			// As audit verify and evidence warn, on stderr.
			warnNoTrustedCopy(e.stderr)
			continue
		}
		fmt.Fprintf(e.stdout, "  WARNING: %s\n", w)
	}
	return nil
}

// regenerateEvidence writes the archive rep checked again from the bundle
// at path, verified with keys and the trusted copies at trusted (""
// for none), and compares the two ([evidence.Regenerate]).
func regenerateEvidence(ctx context.Context, r io.ReaderAt, size int64, rep *evidence.CheckReport, path, trusted string, keys []string) error {
	opts := evidence.RegenerateOptions{Keys: keys}
	if trusted != "" {
		origin := ""
		if len(rep.Manifest.Origins) == 1 {
			origin = rep.Manifest.Origins[0].Origin
		}
		var err error
		if opts.Trusted, _, err = loadTrusted(trusted, origin); err != nil {
			return err
		}
	}
	b, closeBundle, err := openBundleFile(path, path)
	if err != nil {
		return err
	}
	defer closeBundle()
	return evidence.Regenerate(ctx, r, size, rep, b, opts)
}

// parsePeriodBound reads a date (UTC midnight), an RFC 3339 time, "now", or
// a duration from now ("-24h": a day ago). "now" is this instant, not the
// second it started: --to is exclusive, and a log written in the last second
// (a pasted walkthrough) would otherwise leave the evidence empty. A bound
// resolved from now is cut to the microsecond, the precision of every time
// of the evidence, so that the manifest, the report and the rows print it
// alike.
func parsePeriodBound(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, usagef("%s is required", flagName)
	}
	if v == "now" {
		return now.UTC().Truncate(time.Microsecond), nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.UTC().Add(d).Truncate(time.Microsecond), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usagef("%s: want YYYY-MM-DD, an RFC 3339 time, now, or a duration from now such as -24h; got %q", flagName, v)
	}
	return t.UTC(), nil
}

func cmdAuditProve(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit prove", "sqlgate audit prove INDEX --key VKEY [--bundle FILE --origin ORIGIN] [--proof FILE] [-o FILE] [--output json]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	bundlePath := fs.String("bundle", "", "prove the record offline from this exported bundle, against its newest verified checkpoint (needs --origin)")
	originFlag := fs.String("origin", "", "the log origin of the record (an evidence row's log_origin); required with --bundle")
	proofFile := fs.String("proof", "", "check this saved proof (JSON from GET /api/v1/audit/proof) instead of fetching it")
	save := fs.String("o", "", "also save the proof here, to check it again later offline")
	var kf keyFlags
	kf.register(fs)
	pos, keys, err := parseKeyed(fs, args, &kf, output, "a receipt is only as good as the key you trust (dev: audit_verifier_key in dev.json)")
	if err != nil {
		return err
	}
	index := func() (int64, error) {
		if err := wantArgs(pos, 1, "sqlgate audit prove INDEX"); err != nil {
			return 0, err
		}
		var index int64
		if _, err := fmt.Sscan(pos[0], &index); err != nil || index < 0 {
			return 0, usagef("INDEX must be a record index (the audit.index of a reply, or an evidence row's log_index)")
		}
		return index, nil
	}
	var raw []byte
	switch {
	case *proofFile != "":
		if len(pos) > 0 || *bundlePath != "" {
			return usagef("give either INDEX (with or without --bundle) or --proof FILE")
		}
		if raw, err = os.ReadFile(*proofFile); err != nil {
			return err
		}
	case *bundlePath != "":
		index, err := index()
		if err != nil {
			return err
		}
		if *save != "" && sameFile(*save, *bundlePath) {
			return usagef("-o %s is the --bundle the record is proved from: save the proof elsewhere", *save)
		}
		if *originFlag == "" {
			return usagef("--origin is required with --bundle: a bundle may hold the logs of several instances, each numbering its records from 0 (give the row's log_origin)")
		}
		if raw, err = proveFromBundle(ctx, e, *bundlePath, *originFlag, index, keys); err != nil {
			return err
		}
	default:
		index, err := index()
		if err != nil {
			return err
		}
		c, err := e.client(*broker)
		if err != nil {
			return err
		}
		if raw, err = c.AuditProof(ctx, index); err != nil {
			var se *api.StatusError
			if errors.As(err, &se) && se.Status == http.StatusNotFound {
				// The broker answers alike for an index past the end and for
				// someone else's record, so as not to say which exists.
				return fmt.Errorf("audit record %d: not found, or not one of your calls (auditors may prove any record)", index)
			}
			return err
		}
	}
	var p audit.Proof
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("decode proof: %w", err)
	}
	if *originFlag != "" && p.Origin != *originFlag {
		// The broker proves records of its own log only (the API takes no
		// origin); record N of another instance is another record.
		if *proofFile == "" && *bundlePath == "" {
			return fmt.Errorf("the broker proves records of its own log, %s, only: record %d of %s is another record; "+
				"export the log (sqlgate audit export -o FILE) and prove it offline with --bundle FILE --origin %s", p.Origin, p.Index, *originFlag, *originFlag)
		}
		return fmt.Errorf("the proof is of a record of %s, not of %s", p.Origin, *originFlag)
	}
	if *save != "" {
		if err := os.WriteFile(*save, raw, 0o600); err != nil {
			return err
		}
	}
	verifiers, err := audit.NewVerifiers(keys...)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	verr := audit.VerifyProof(&p, verifiers)
	rec, _ := audit.DecodeRecord(p.Record)
	leaf := audit.LeafHash(p.Record)
	if *output == "json" {
		res := map[string]any{"ok": verr == nil, "origin": p.Origin, "index": p.Index, "leaf_hash": hex.EncodeToString(leaf[:]), "record": rec}
		if verr != nil {
			res["error"] = verr.Error()
		}
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else if verr == nil {
		fmt.Fprintf(e.stdout, "record %d of %s is in the signed log\n", p.Index, p.Origin)
		if rec != nil {
			fmt.Fprintf(e.stdout, "  kind %s, time %s, correlation id %s\n", rec.Kind, rec.Time.UTC().Format("2006-01-02T15:04:05Z"), rec.CorrelationID)
		}
		fmt.Fprintf(e.stdout, "  leaf hash %s (an evidence row of this record has this leaf_hash)\n", hex.EncodeToString(leaf[:]))
		cp, _ := audit.ParseCheckpoint([]byte(p.Checkpoint))
		if cp != nil {
			fmt.Fprintf(e.stdout, "  covered by checkpoint of size %d\n", cp.Size)
		}
	}
	if verr != nil {
		if *output == "text" {
			fmt.Fprintf(e.stdout, "PROOF INVALID: %v\n", verr)
		}
		return errSilent
	}
	return nil
}

// proveFromBundle verifies the log of origin in the bundle with keys and
// builds the inclusion proof of record index against its newest verified
// checkpoint. The caller checks the proof like one from the broker.
func proveFromBundle(ctx context.Context, e *env, path, origin string, index int64, keys []string) ([]byte, error) {
	b, closeBundle, err := openBundle(ctx, e, "", path, nil)
	if err != nil {
		return nil, err
	}
	defer closeBundle()
	rep, err := audit.Verify(ctx, b, audit.VerifyOptions{Keys: keys, Origin: origin})
	if err != nil {
		return nil, err
	}
	if len(rep.Origins) == 0 {
		held, _ := b.Origins(ctx)
		return nil, fmt.Errorf("%s holds no log of origin %s (it holds: %s)", path, origin, strings.Join(held, ", "))
	}
	if !rep.OK() {
		first := rep.FirstFailure()
		return nil, fmt.Errorf("the log of %s in %s does not verify: %s (sqlgate audit verify --bundle %s shows every problem)", origin, path, first, path)
	}
	o := rep.Origins[0]
	if o.Latest == nil {
		return nil, fmt.Errorf("the log of %s in %s has no signed checkpoint to prove against", origin, path)
	}
	p, err := b.Prove(ctx, origin, index, o.Latest)
	if errors.Is(err, audit.ErrNotFound) {
		return nil, fmt.Errorf("record %d of %s: not in %s, or not covered by its newest signed checkpoint (size %d): %w", index, origin, path, o.Latest.Size, err)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(p)
}
