package sqlstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestInputsPages: policy replay reads a long log a page (1024 records) at
// a time. Every record with an input at or after `since` is handed out once,
// in index order, also when record times do not follow their indexes
// (callers date their records); a record altered on the second page stops
// the read before any record of that page is handed out.
func TestInputsPages(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s, db := b.open(t)
			l, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			const n = 2500
			base := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
			// Times run backwards against the order of appends, in steps of
			// a second: record i of the appends is dated base - i s.
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					_, err := l.AppendWithInput(t.Context(), &audit.Record{
						Kind: audit.KindDecision, Time: base.Add(-time.Duration(i) * time.Second), Reasons: []string{fmt.Sprint("r", i)},
					}, []byte(`{"i":1}`))
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			read := func(since time.Time) (got []int64, err error) {
				err = l.Inputs(t.Context(), since, func(r audit.Record, input []byte) error {
					if !r.Time.Before(since) && string(input) == `{"i":1}` {
						got = append(got, r.Index)
					} else {
						return fmt.Errorf("record %d (time %s, input %q) handed out for since %s", r.Index, r.Time, input, since)
					}
					return nil
				})
				return got, err
			}
			got, err := read(time.Time{})
			if err != nil || len(got) != n {
				t.Fatalf("Inputs(all) = %d records, %v; want %d", len(got), err, n)
			}
			for k := 1; k < len(got); k++ {
				if got[k] <= got[k-1] {
					t.Fatalf("records out of order or repeated: %d after %d", got[k], got[k-1])
				}
			}
			since := base.Add(-(n / 2) * time.Second)
			half, err := read(since)
			if err != nil || len(half) != n/2+1 {
				t.Errorf("Inputs(since the middle) = %d records, %v; want %d", len(half), err, n/2+1)
			}

			// Alter a record of the second page.
			victim := got[1500]
			var data []byte
			b.query(t, db, "SELECT data FROM sqlgate_audit_records WHERE origin = ? AND idx = ?", []any{origin, victim}, &data)
			edited := bytes.Replace(data, []byte(`["r`), []byte(`["x`), 1)
			b.exec(t, db, "UPDATE sqlgate_audit_records SET data = ? WHERE origin = ? AND idx = ?", edited, origin, victim)
			handed := 0
			err = l.Inputs(t.Context(), time.Time{}, func(r audit.Record, _ []byte) error {
				handed++
				if r.Index >= got[1024] {
					return fmt.Errorf("record %d of the altered page handed out", r.Index)
				}
				return nil
			})
			if !errors.Is(err, audit.ErrRecordAltered) || handed != 1024 {
				t.Errorf("Inputs after altering record %d: %d handed out, err %v; want the first page (1024) and ErrRecordAltered", victim, handed, err)
			}
		})
	}
}
