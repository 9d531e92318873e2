package audit_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
)

func TestSealKeyOpensAndStaysEqual(t *testing.T) {
	k1 := audit.ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}
	k2 := audit.ParamKey{ID: "k2", Secret: []byte("fedcba9876543210fedcba9876543210")}
	const key = "73abc39756f67180fb86b6effde2299ffd91203a56dd2349a24f0aa6cd5825d2"
	a, b := audit.SealKey(k1, key), audit.SealKey(k1, key)
	if a != b {
		t.Fatalf("SealKey is not deterministic: %q, %q", a, b)
	}
	// Pinned: records hold it, and recovery must open those of earlier
	// versions.
	const pinned = "sealed:k1:e449e42364aa68135fb1bf52d8420833a30e31d2fad948263117e3dd0699284614089428f3bf4f648315cc7fd9952b1d06289b6a33b7c1861e47e13e08230dab57612ca95b0208889e310b4c09168f26"
	if a != pinned {
		t.Errorf("SealKey = %s, want %s", a, pinned)
	}
	if !strings.HasPrefix(a, "sealed:k1:") || strings.Contains(a, key) {
		t.Fatalf("SealKey = %q, want sealed:k1:… without the key", a)
	}
	if c := audit.SealKey(k1, key[:63]+"3"); c == a {
		t.Error("two keys seal to the same value")
	}
	if c := audit.SealKey(k2, key); c == a || !strings.HasPrefix(c, "sealed:k2:") {
		t.Errorf("another parameter key seals to %q", c)
	}
	for _, keys := range [][]audit.ParamKey{{k1}, {k2, k1}} {
		if got, err := audit.OpenKey(keys, a); err != nil || got != key {
			t.Errorf("OpenKey(%d keys) = %q, %v; want %q", len(keys), got, err, key)
		}
	}
	if _, err := audit.OpenKey([]audit.ParamKey{k2}, a); !errors.Is(err, audit.ErrUnknownParamKey) {
		t.Errorf("OpenKey without its key = %v, want ErrUnknownParamKey", err)
	}
	last := byte('0')
	if a[len(a)-1] == '0' {
		last = '1'
	}
	forged := a[:len(a)-1] + string(last)
	if _, err := audit.OpenKey([]audit.ParamKey{k1}, forged); err == nil {
		t.Errorf("OpenKey(altered value %q) = nil error", forged)
	}
	if _, err := audit.OpenKey([]audit.ParamKey{{ID: "k1", Secret: k2.Secret}}, a); err == nil {
		t.Error("OpenKey under another secret of the same id = nil error")
	}
	if got, err := audit.OpenKey([]audit.ParamKey{k1}, key); err != nil || got != key {
		t.Errorf("OpenKey(a key of an earlier version, in the clear) = %q, %v; want it as is", got, err)
	}
	if got, err := audit.OpenKey(nil, "order-1"); err != nil || got != "order-1" {
		t.Errorf("OpenKey(plain) = %q, %v", got, err)
	}
	for _, bad := range []string{"sealed:k1", "sealed:k1:zz", "sealed:k1:00"} {
		if _, err := audit.OpenKey([]audit.ParamKey{k1}, bad); err == nil {
			t.Errorf("OpenKey(%q) = nil error", bad)
		}
	}
}

// TestOpenKeyTriesEveryKeyOfItsID: a parameter key recreated with the id
// of the one before (its file removed the same day, when ids were dates)
// seals under the same id: the key sealed by the old one still opens when
// both are given, whichever comes first, and the log refuses two keys of
// one id (records name their key by its id).
func TestOpenKeyTriesEveryKeyOfItsID(t *testing.T) {
	old := audit.ParamKey{ID: "k20260401", Secret: []byte("0123456789abcdef0123456789abcdef")}
	recreated := audit.ParamKey{ID: "k20260401", Secret: []byte("fedcba9876543210fedcba9876543210")}
	const key = "order-1"
	for _, sealer := range []audit.ParamKey{old, recreated} {
		sealed := audit.SealKey(sealer, key)
		for _, keys := range [][]audit.ParamKey{{recreated, old}, {old, recreated}} {
			if got, err := audit.OpenKey(keys, sealed); err != nil || got != key {
				t.Errorf("OpenKey(both keys of id %s) of a key sealed by one = %q, %v; want %q", old.ID, got, err, key)
			}
		}
	}
	if _, err := audit.OpenKey([]audit.ParamKey{recreated}, audit.SealKey(old, key)); err == nil || errors.Is(err, audit.ErrUnknownParamKey) {
		t.Errorf("OpenKey with only another key of the id = %v, want an error other than ErrUnknownParamKey", err)
	}
	for _, cfg := range []audit.Config{
		{ParamKey: recreated, PreviousParamKeys: []audit.ParamKey{old}},
		{ParamKey: audit.ParamKey{ID: "k2", Secret: old.Secret}, PreviousParamKeys: []audit.ParamKey{old, recreated}},
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `parameter key id "k20260401" is given to two keys`) {
			t.Errorf("Config.Validate with two parameter keys of one id = %v, want them refused", err)
		}
	}
}
