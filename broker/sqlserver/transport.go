package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"
)

// Why the adapter watches its sockets.
//
// The call batch is read through go-mssqldb's message queue
// (sqlexp.ReturnMessage): it is the only way the driver reports each row
// count (MsgRowsAffected), which rows_affected adds up. In that mode the
// caller waits in ReturnMessage.Message, and only the driver's response
// reader puts anything there. When reading the first packet of the reply
// fails (processSingleResponse in go-mssqldb v1.11.2, token.go: BeginRead
// failing sends the error on the token channel and returns), nothing is
// queued: the error waits on a channel only Rows methods read, and
// Message blocks until the context ends — for a call, up to the route's
// deadline, holding one of the pool's slots while later calls queue
// behind it. A connection reset while the server runs the call (failover,
// a killed session, a network reset) is exactly that case. (A failure
// after the first packet panics inside the reader, which queues MsgError;
// the plain Rows mode reports every failure but has no row counts.)
//
// go-mssqldb offers no way to see its reader's state without consuming
// tokens out of order, so the adapter watches the socket underneath
// instead: its connector dials TCP through [watchDialer], whose
// connections close a channel on the first failed Read — the same read
// whose failure the driver is stuck with (every driver read goes through
// this socket, TLS included). runCall waits on the message queue and on
// that channel, so a lost connection ends the call at once with
// ErrUnavailable. A read only fails while a reply is awaited (the driver
// reads nothing between requests), and a TCP connection that failed a
// read is unusable, so the signal has no false positives; the pool also
// drops a watched connection once it is lost (watchedConn.IsValid). What
// it cannot see is a stream that ends without a socket error: a TLS
// close_notify from the server makes the TLS layer report EOF without
// reading the socket again. The context deadline still bounds that case.

// watchKey carries the watch of the driver connection being opened from
// watchConnector.Connect to watchDialer.DialContext.
type watchKey struct{}

// watch is the lost signal of one driver connection: closed when a Read
// on a socket dialed for it fails. All sockets dialed for one connection
// share it: go-mssqldb may dial several (the addresses of a listener in
// parallel, a new server after an Azure SQL redirect), but it reads only
// the one it keeps, and closes the others without reading them.
type watch struct {
	once sync.Once
	lost chan struct{}
}

func (w *watch) markLost() { w.once.Do(func() { close(w.lost) }) }

// watchedSocket is a TCP connection that reports its first failed Read.
type watchedSocket struct {
	net.Conn
	w *watch
}

func (s *watchedSocket) Read(b []byte) (int, error) {
	n, err := s.Conn.Read(b)
	if err != nil {
		s.w.markLost()
	}
	return n, err
}

// watchDialer dials like go-mssqldb's default dialer (net.Dialer with the
// DSN's keepalive, 30 s by default: mssql.go createDialer) and watches
// the TCP connections of a connection being opened by watchConnector.
// Other networks (the SQL Browser's UDP query, read with a deadline
// before the TCP connection exists) are not watched.
type watchDialer struct{ nd *net.Dialer }

func newWatchDialer(dsn string) watchDialer {
	ka := 30 * time.Second
	if p, err := msdsn.Parse(dsn); err == nil && p.KeepAlive != 0 {
		ka = p.KeepAlive
	}
	return watchDialer{nd: &net.Dialer{KeepAlive: ka}}
}

func (d watchDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.nd.DialContext(ctx, network, addr)
	if err != nil || !strings.HasPrefix(network, "tcp") {
		return c, err
	}
	if w, ok := ctx.Value(watchKey{}).(*watch); ok {
		return &watchedSocket{Conn: c, w: w}, nil
	}
	return c, nil
}

// watchConnector opens go-mssqldb connections whose sockets are watched.
type watchConnector struct{ *mssql.Connector }

// watched wraps a go-mssqldb connector (SQL or Entra authentication).
func watched(c *mssql.Connector, dsn string) watchConnector {
	c.Dialer = newWatchDialer(dsn)
	return watchConnector{c}
}

// Connect implements driver.Connector.
func (c watchConnector) Connect(ctx context.Context) (driver.Conn, error) {
	w := &watch{lost: make(chan struct{})}
	dc, err := c.Connector.Connect(context.WithValue(ctx, watchKey{}, w))
	if err != nil {
		// go-mssqldb returns the connection when resetting it failed (and
		// a nil *Conn in the interface when connecting failed).
		if mc, ok := dc.(*mssql.Conn); ok && mc != nil {
			_ = mc.Close()
		}
		return nil, err
	}
	mc, ok := dc.(*mssql.Conn)
	if !ok {
		_ = dc.Close()
		return nil, fmt.Errorf("sqlserver: unexpected driver connection %T", dc)
	}
	return &watchedConn{Conn: mc, lost: w.lost}, nil
}

// watchedConn is a go-mssqldb connection with its lost signal. Every
// driver interface of *mssql.Conn is promoted; IsValid also reports a
// lost connection, so database/sql discards it instead of pooling it.
type watchedConn struct {
	*mssql.Conn
	lost <-chan struct{}
}

// IsValid implements driver.Validator.
func (c *watchedConn) IsValid() bool {
	select {
	case <-c.lost:
		return false
	default:
		return c.Conn.IsValid()
	}
}

// errConnLost is a call's connection failing while the call waited for
// the server's reply.
var errConnLost = fmt.Errorf("the connection to the server was lost during the call: %w", driver.ErrBadConn)

// errNotWatched means a connection did not come from watchConnector; a
// call on it could not notice the connection's loss, so none runs.
var errNotWatched = errors.New("sqlserver: connection is not watched")

// lostSignal returns the lost channel of conn's driver connection.
func lostSignal(conn *sql.Conn) (<-chan struct{}, error) {
	var lost <-chan struct{}
	err := conn.Raw(func(dc any) error {
		wc, ok := dc.(*watchedConn)
		if !ok {
			return errNotWatched
		}
		lost = wc.lost
		return nil
	})
	return lost, err
}
