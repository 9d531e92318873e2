package control_test

import (
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker/control"
)

// TestSignInCutoffs: a principal has no cutoff until one is set; a later
// cutoff replaces an earlier one, never the reverse; principals are apart.
func TestSignInCutoffs(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			c, err := control.OpenSignInCutoffs(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := control.OpenSignInCutoffs(ctx, db); err != nil {
				t.Fatalf("second open: %v", err)
			}
			alice, bob := "https://idp.example alice", "https://idp.example bob"
			t1 := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
			t2 := t1.Add(time.Hour)
			if got, err := c.Cutoff(ctx, alice); err != nil || !got.IsZero() {
				t.Fatalf("Cutoff before any = %v, %v; want zero", got, err)
			}
			for _, step := range []struct {
				set, want time.Time
			}{
				{t1, t1},
				{t2, t2}, // later: replaces
				{t1, t2}, // earlier: kept
			} {
				if err := c.SetCutoff(ctx, alice, step.set); err != nil {
					t.Fatal(err)
				}
				if got, err := c.Cutoff(ctx, alice); err != nil || !got.Equal(step.want) {
					t.Errorf("after SetCutoff(%s): Cutoff = %v, %v; want %s", step.set, got, err, step.want)
				}
			}
			if got, err := c.Cutoff(ctx, bob); err != nil || !got.IsZero() {
				t.Errorf("Cutoff(bob) = %v, %v; want zero", got, err)
			}
		})
	}
}
