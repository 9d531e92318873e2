package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// MarshalJSON encodes the report with an "ok" field that mirrors
// [Report.OK].
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	out := struct {
		OK bool `json:"ok"`
		// TrustedKey is false when no trusted key was given: the log was
		// only checked against its own key history (self-consistency).
		TrustedKey bool `json:"trusted_key"`
		*plain
	}{OK: r.OK(), TrustedKey: !r.KeysFromSource, plain: (*plain)(r)}
	if out.Failures == nil {
		out.Failures = []Problem{}
	}
	if out.Exceptions == nil {
		out.Exceptions = []Problem{}
	}
	return json.Marshal(out)
}

// WriteText writes a human summary: the verdict and the first bad index,
// a warning for records no signed checkpoint covers yet, one paragraph per
// origin, then failures and exceptions.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	// bufio.Writer keeps the first write error; Flush returns it.
	printf := func(format string, args ...any) { _, _ = fmt.Fprintf(bw, format, args...) }
	if r.OK() {
		printf("audit log verification: OK (%d records, %s, %s)\n", r.Records, plural(len(r.Origins), "origin"), r.Duration.Round(time.Millisecond))
	} else {
		first := r.FirstFailure()
		printf("audit log verification: FAILED (%s)\n", plural(len(r.Failures), "integrity failure"))
		if first.Index >= 0 {
			printf("first bad record: origin %s index %d: %s\n", first.Origin, first.Index, first.Message)
		} else {
			printf("first failure: origin %s: %s\n", first.Origin, first.Message)
		}
	}
	if r.KeysFromSource {
		printf("WARNING: NO TRUSTED KEY USED: checkpoints were checked against the key history stored in the log itself.\n" +
			"This only shows the log is self-consistent: anyone who can write the log can re-sign it. Pin the published verifier key (--key).\n")
	}
	for _, o := range r.Origins {
		if o.Uncovered > 0 {
			printf("WARNING: origin %s: the newest %d records (indexes %d to %d) are not covered by a signed checkpoint: nothing proves them yet\n",
				o.Origin, o.Uncovered, o.End-o.Uncovered, o.End-1)
		}
	}
	printf("keys: %s\n", joinOr(r.Keys, "none"))
	for _, o := range r.Origins {
		printf("\norigin %s\n", o.Origin)
		if o.End > o.First {
			printf("  records checked: %d (indexes %d to %d)", o.Records, o.First, o.End-1) // End is exclusive
		} else {
			printf("  records checked: %d", o.Records)
		}
		if o.Pruned > 0 {
			printf(", %s not in the source (pruned, or left out of the export)", plural(int(o.Pruned), "older record"))
		}
		printf("\n")
		if !o.FirstRecordTime.IsZero() {
			printf("  time span: %s .. %s\n", o.FirstRecordTime.Format(time.RFC3339), o.LastRecordTime.Format(time.RFC3339))
		}
		printf("  checkpoints: %d valid, %d trusted copies checked, signed by %s\n", o.Checkpoints, o.Trusted, joinOr(o.KeyIDs, "nobody"))
		if o.Latest != nil {
			printf("  latest checkpoint: size %d, root %s, %s\n", o.Latest.Size, o.Latest.Root, o.Latest.Time.Format(time.RFC3339))
		}
		if o.Uncovered > 0 {
			printf("  NOT COVERED by a signed checkpoint: %d records (indexes %d to %d)\n", o.Uncovered, o.End-o.Uncovered, o.End-1)
		}
		printf("  unpaired intents: %d\n", o.Unpaired)
		if o.FirstBad >= 0 {
			printf("  first bad index: %d\n", o.FirstBad)
		}
	}
	if len(r.Failures) > 0 {
		printf("\nintegrity failures:\n")
		for _, p := range r.Failures {
			printf("  %s: %s\n", p.Origin, p)
		}
	}
	if len(r.ExceptionCounts) > 0 {
		printf("\nexceptions (review; not integrity failures by themselves):\n")
		for _, code := range slices.Sorted(maps.Keys(r.ExceptionCounts)) {
			printf("  %s: %d\n", code, r.ExceptionCounts[code])
		}
		for _, p := range r.Exceptions {
			printf("  %s: %s\n", p.Origin, p)
		}
	}
	return bw.Flush()
}

// plural returns "1 origin", "2 origins".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func joinOr(s []string, empty string) string {
	if len(s) == 0 {
		return empty
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}
