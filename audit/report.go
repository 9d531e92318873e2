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
		*plain
	}{OK: r.OK(), plain: (*plain)(r)}
	if out.Failures == nil {
		out.Failures = []Problem{}
	}
	if out.Exceptions == nil {
		out.Exceptions = []Problem{}
	}
	return json.Marshal(out)
}

// WriteText writes a human summary: the verdict and the first bad index,
// one paragraph per origin, then failures and exceptions.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if r.OK() {
		fmt.Fprintf(bw, "audit log verification: OK (%d records, %d origins, %s)\n", r.Records, len(r.Origins), r.Duration.Round(time.Millisecond))
	} else {
		first := r.FirstFailure()
		fmt.Fprintf(bw, "audit log verification: FAILED (%d integrity failures)\n", len(r.Failures))
		if first.Index >= 0 {
			fmt.Fprintf(bw, "first bad record: origin %s index %d: %s\n", first.Origin, first.Index, first.Message)
		} else {
			fmt.Fprintf(bw, "first failure: origin %s: %s\n", first.Origin, first.Message)
		}
	}
	if r.KeysFromSource {
		fmt.Fprintf(bw, "WARNING: no trusted keys given; checkpoints were checked against the key history stored in the log itself\n")
	}
	fmt.Fprintf(bw, "keys: %s\n", joinOr(r.Keys, "none"))
	for _, o := range r.Origins {
		fmt.Fprintf(bw, "\norigin %s\n", o.Origin)
		fmt.Fprintf(bw, "  records checked: %d (indexes %d..%d)", o.Records, o.First, o.End)
		if o.Pruned > 0 {
			fmt.Fprintf(bw, ", %d older records pruned", o.Pruned)
		}
		fmt.Fprintln(bw)
		if !o.FirstRecordTime.IsZero() {
			fmt.Fprintf(bw, "  time span: %s .. %s\n", o.FirstRecordTime.Format(time.RFC3339), o.LastRecordTime.Format(time.RFC3339))
		}
		fmt.Fprintf(bw, "  checkpoints: %d valid, %d trusted copies checked, signed by %s\n", o.Checkpoints, o.Trusted, joinOr(o.KeyIDs, "nobody"))
		if o.Latest != nil {
			fmt.Fprintf(bw, "  latest checkpoint: size %d, root %s, %s\n", o.Latest.Size, o.Latest.Root, o.Latest.Time.Format(time.RFC3339))
		}
		fmt.Fprintf(bw, "  unpaired intents: %d\n", o.Unpaired)
		if o.FirstBad >= 0 {
			fmt.Fprintf(bw, "  first bad index: %d\n", o.FirstBad)
		}
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(bw, "\nintegrity failures:\n")
		for _, p := range r.Failures {
			fmt.Fprintf(bw, "  %s: %s\n", p.Origin, p)
		}
	}
	if len(r.ExceptionCounts) > 0 {
		fmt.Fprintf(bw, "\nexceptions (review; not integrity failures by themselves):\n")
		for _, code := range slices.Sorted(maps.Keys(r.ExceptionCounts)) {
			fmt.Fprintf(bw, "  %s: %d\n", code, r.ExceptionCounts[code])
		}
		for _, p := range r.Exceptions {
			fmt.Fprintf(bw, "  %s: %s\n", p.Origin, p)
		}
	}
	return bw.Flush()
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
