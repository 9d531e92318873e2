package header_test

import (
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/internal/header"
)

func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"order-1": true, "a": true, "": false, "order 1": false, "tab\there": false,
		"é": false, strings.Repeat("x", header.MaxCorrelationID): true, strings.Repeat("x", header.MaxCorrelationID+1): false,
	} {
		if got := header.Valid(s, header.MaxCorrelationID); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}
