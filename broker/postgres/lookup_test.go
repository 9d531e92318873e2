package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
)

// cuttableConn is a connection the network can lose: after cut, the server
// sees the connection closed and every read of the client returns io.EOF,
// as when the peer or a middlebox closes it. A cancel request (which pgx
// sends on a new connection when one fails) does not get through either.
type cuttableConn struct {
	net.Conn
	lost *atomic.Bool
}

func (c cuttableConn) Write(b []byte) (int, error) {
	if len(b) == 16 && b[3] == 16 && b[4] == 0x04 && b[5] == 0xd2 && b[6] == 0x16 && b[7] == 0x2e { // CancelRequest
		_ = c.Close()
		return 0, io.ErrClosedPipe
	}
	return c.Conn.Write(b)
}

func (c cuttableConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.lost.Load() {
		return 0, io.EOF
	}
	return n, err
}

const gatedSchema = `
CREATE TABLE gate (id int PRIMARY KEY); INSERT INTO gate VALUES (1);
CREATE FUNCTION gated_one(customer text) RETURNS TABLE (id bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  PERFORM 1 FROM gate WHERE gate.id = 1 FOR UPDATE;
  RETURN QUERY INSERT INTO orders (customer, amount, quantity, express) VALUES (gated_one.customer, 1, 1, true) RETURNING orders.id;
END $$;
CREATE FUNCTION gated_two(customer text) RETURNS TABLE (id bigint, f double precision) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  PERFORM 1 FROM gate WHERE gate.id = 1 FOR UPDATE;
  RETURN QUERY INSERT INTO orders (customer, amount, quantity, express) VALUES (gated_two.customer, 1, 1, true) RETURNING orders.id, 0.5::double precision;
END $$;
CREATE PROCEDURE gated_proc(customer text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM gate WHERE gate.id = 1 FOR UPDATE;
  INSERT INTO orders (customer, amount, quantity, express) VALUES (gated_proc.customer, 1, 1, true);
END $$;
`

// TestLookupWaitsForRunningCall: the connection of a call is lost while the
// server still runs it (blocked on a row lock). Execute fails as
// unavailable (the read ends in an unexpected EOF), and Lookup, the
// broker's question "did it commit?", waits for the transaction still
// running under the key instead of answering "no record" at once: it
// returns the committed record when the server commits the call (the
// one-round-trip form, committed at the pipeline's Sync, which the server
// already has), and no record when the server rolls it back (the other
// forms, whose COMMIT never arrives). pgx's cancel request is lost with
// the network: the server goes on with the call.
func TestLookupWaitsForRunningCall(t *testing.T) {
	dsn := newSchema(t)
	ctx := t.Context()
	var (
		mu    sync.Mutex
		conns []cuttableConn
	)
	postgres.SetDialHook(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := cuttableConn{c, &atomic.Bool{}}
		mu.Lock()
		conns = append(conns, cc)
		mu.Unlock()
		return cc, nil
	})
	calls, err := postgres.Open(ctx, postgres.Config{Name: "test", DSN: dsn, MaxConns: 1, ApplicationName: "sqlgate-lookup-call", CreateIdempotencyTable: true})
	postgres.SetDialHook(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(calls.Close)
	lookups, err := postgres.Open(ctx, postgres.Config{Name: "test", DSN: dsn, MaxConns: 1, ApplicationName: "sqlgate-lookup"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lookups.Close)
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	if _, err := admin.Exec(ctx, gatedSchema); err != nil {
		t.Fatal(err)
	}
	// pg_stat_activity is read outside a transaction: within one it does
	// not change.
	obs, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = obs.Close(context.Background()) })
	params := map[string]any{"type": "object", "properties": map[string]any{"customer": map[string]any{"type": "string"}}}
	tests := []struct {
		name      string
		spec      route.Spec
		committed bool
	}{
		{"function, one round trip", route.Spec{Procedure: "gated_one", Params: params}, true},
		{"function, two round trips", route.Spec{Procedure: "gated_two", Params: params}, false},
		{"procedure", route.Spec{Procedure: "gated_proc", Params: params}, false},
		{"statement", route.Spec{Statement: &route.StatementSpec{
			Name: "gated_statement",
			SQL:  "WITH g AS (SELECT 1 FROM gate WHERE id = 1 FOR UPDATE) INSERT INTO orders (customer, amount, quantity, express) SELECT :customer, 1, 1, true FROM g RETURNING id",
		}, Params: params}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testRoute(t, tc.spec)
			p, _ := r.Decode([]byte(`{"customer":"lost"}`))
			c := &broker.Call{Route: r, Params: p, IdempotencyKey: "lost-" + itoa(i), RequestHash: "h", DecisionID: "decision-" + itoa(i)}
			// Warm up: the call's statements are prepared and its plan
			// described before the gate is held.
			warm := *c
			warm.IdempotencyKey += "-warm"
			if _, err := calls.Execute(ctx, &warm); err != nil {
				t.Fatalf("warm-up call: %v", err)
			}
			var before int64
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&before); err != nil {
				t.Fatal(err)
			}
			holder, err := admin.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = holder.Rollback(context.Background()) }()
			if _, err := holder.Exec(ctx, "SELECT 1 FROM gate WHERE id = 1 FOR UPDATE"); err != nil {
				t.Fatal(err)
			}
			executed := make(chan error, 1)
			go func() {
				_, err := calls.Execute(ctx, c)
				executed <- err
			}()
			waitFor(t, obs, "sqlgate-lookup-call", false, executed) // the call blocks on the gate
			mu.Lock()
			for _, cc := range conns { // the network loses the call's connection
				cc.lost.Store(true)
				_ = cc.Close()
			}
			mu.Unlock()
			if err := <-executed; !errors.Is(err, broker.ErrUnavailable) {
				t.Fatalf("Execute on a lost connection = %v, want ErrUnavailable", err)
			}
			type lookup struct {
				res   *broker.Result
				found bool
				err   error
			}
			looked := make(chan lookup, 1)
			go func() {
				res, found, err := lookups.Lookup(ctx, c.IdempotencyKey)
				looked <- lookup{res, found, err}
			}()
			waitFor(t, obs, "sqlgate-lookup", true, looked) // Lookup waits for the call
			if err := holder.Commit(ctx); err != nil {      // the server goes on with the call
				t.Fatal(err)
			}
			l := <-looked
			if l.err != nil {
				t.Fatalf("Lookup = %v", l.err)
			}
			var after int64
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&after); err != nil {
				t.Fatal(err)
			}
			if l.found != tc.committed || (after-before == 1) != tc.committed {
				t.Fatalf("Lookup found %v, orders added %d; want the call committed: %v", l.found, after-before, tc.committed)
			}
			if l.found && (l.res.DecisionID != c.DecisionID || l.res.RequestHash != c.RequestHash) {
				t.Errorf("Lookup record = decision %q hash %q, want the call's", l.res.DecisionID, l.res.RequestHash)
			}
		})
	}
}

// querier is what waitFor reads pg_stat_activity through.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// waitFor waits until a backend of application app waits for a lock: an
// advisory lock (advisory) or a row's. It fails the test if done delivers
// first: what should wait did not.
func waitFor[T any](t *testing.T, q querier, app string, advisory bool, done chan T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var n int
		if err := q.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND (wait_event = 'advisory') = $2`, app, advisory).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		select {
		case v := <-done:
			t.Fatalf("%s finished without waiting: %+v", app, v)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not wait for a lock", app)
}
