package broker_test

import (
	"testing"

	"github.com/sqlgate/sqlgate/broker"
)

// TestDBErrorText: an error names the vendor's number and its SQLSTATE,
// and PostgreSQL's, whose number is its SQLSTATE, only once ("sql error 0
// (2BP01)" said nothing the state did not).
func TestDBErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  broker.DBError
		want string
	}{
		{broker.DBError{State: "2BP01", Message: "role cannot be dropped"}, "sql error 2BP01: role cannot be dropped"},
		{broker.DBError{Number: 42704, State: "42704", Message: "role does not exist"}, "sql error 42704: role does not exist"},
		{broker.DBError{Number: 547, State: "1", Message: "CHECK constraint"}, "sql error 547 (1): CHECK constraint"},
		{broker.DBError{Number: 19, Message: "constraint failed"}, "sql error 19: constraint failed"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
