package audittest_test

import (
	"testing"

	"github.com/sqlgate/sqlgate/audit/audittest"
)

func TestMemStoreConformance(t *testing.T) {
	audittest.RunStoreTests(t, func(*testing.T) audittest.StoreSource { return audittest.NewStore() })
}
