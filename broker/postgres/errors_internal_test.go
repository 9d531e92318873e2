package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlgate/sqlgate/broker"
)

// A connection lost while a reply was awaited (the server or the network
// closed it: pgx reads io.ErrUnexpectedEOF) and a connection pgx already
// closed are unavailability, not an internal error: the broker then asks
// whether the call committed and answers unavailable or unknown.
func TestLostConnectionIsUnavailable(t *testing.T) {
	e := &Executor{cfg: Config{Name: "orders"}}
	for _, err := range []error{
		io.ErrUnexpectedEOF,
		fmt.Errorf("receive: %w", io.ErrUnexpectedEOF),
		fmt.Errorf("batch: %w", pgconn.ErrConnClosed),
	} {
		got := e.classify(context.Background(), err, nil)
		if !errors.Is(got, broker.ErrUnavailable) {
			t.Errorf("classify(%v) = %v, want ErrUnavailable", err, got)
		}
	}
	if got := e.classify(context.Background(), errors.New("cannot encode value"), nil); errors.Is(got, broker.ErrUnavailable) {
		t.Errorf("a driver error is classified %v, want not unavailable", got)
	}
}
