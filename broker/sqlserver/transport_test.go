package sqlserver

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
)

// TDS packet types the fake server tells apart (MS-TDS 2.2.3.1.1).
const (
	tdsSQLBatch = 0x01
	tdsRPC      = 0x03
)

func tdsHex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Replies of the fake server, each one TDS packet (type 4, end of message).
var (
	// PRELOGIN response: version 16.0, encryption not supported
	// (ENCRYPT_NOT_SUP), so the login goes in clear text.
	fakePrelogin = tdsHex(`04 01 00 20 00 00 01 00
		00 00 10 00 06  01 00 16 00 01  06 00 17 00 01  FF
		0C 00 07 D0 00 00  02  01`)
	// LOGINACK (TDS 7.4, "Microsoft SQL Server") then DONE.
	fakeLoginAck = tdsHex(`04 01 00 4A 00 00 01 00
		AD 32 00 01 74 00 00 04 14
		4d 00 69 00 63 00 72 00 6f 00 73 00 6f 00 66 00 74 00 20 00 53 00 51 00 4c 00 20 00 53 00 65 00 72 00 76 00 65 00 72 00
		0c 00 07 d0
		fd 00 00 00 00 00 00 00 00 00 00 00 00`)
	// DONE, final: a SQL batch that returned nothing.
	fakeDone = tdsHex(`04 01 00 15 00 00 01 00  fd 00 00 00 00 00 00 00 00 00 00 00 00`)
)

// readTDSMessage reads one client message (packets up to end of message)
// and returns its packet type.
func readTDSMessage(c net.Conn) (byte, error) {
	for {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint16(h[2:4])) - len(h)
		if n < 0 {
			return 0, errors.New("bad TDS packet length")
		}
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return 0, err
		}
		if h[1]&0x01 != 0 {
			return h[0], nil
		}
	}
}

// dropOnRPCServer is a fake SQL Server: it completes the login, answers
// every SQL batch (ping, the idempotency table check, the begin batch)
// with DONE, and closes the connection without a reply when it receives an
// RPC request — the call batch, sent through sp_executesql — as a
// failover, a killed session or a network reset does while the server runs
// a call. It returns the address and a count of the RPCs it dropped.
func dropOnRPCServer(t *testing.T) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		dropped int
	)
	serve := func(c net.Conn) {
		defer func() { _ = c.Close() }()
		for i, reply := range [][]byte{fakePrelogin, fakeLoginAck} {
			if _, err := readTDSMessage(c); err != nil {
				return
			}
			if _, err := c.Write(reply); err != nil {
				t.Errorf("fake server: writing reply %d: %v", i, err)
				return
			}
		}
		for {
			typ, err := readTDSMessage(c)
			if err != nil {
				return
			}
			switch typ {
			case tdsRPC:
				mu.Lock()
				dropped++
				mu.Unlock()
				return
			case tdsSQLBatch:
				if _, err := c.Write(fakeDone); err != nil {
					return
				}
			default:
				t.Errorf("fake server: unexpected TDS message type %#x", typ)
				return
			}
		}
	}
	serveFake(t, ln, serve)
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return dropped }
}

// A connection lost while the server runs the call (before any reply)
// fails the call with ErrUnavailable at once. go-mssqldb queues no message
// when the first read of a reply fails, so the call used to wait for its
// deadline, holding its pool slot, while the calls behind it queued.
func TestExecuteConnectionLostBeforeReply(t *testing.T) {
	t.Parallel()
	addr, dropped := dropOnRPCServer(t)
	host, port, _ := net.SplitHostPort(addr)
	e, err := Open(context.Background(), Config{
		Name:     "orders",
		DSN:      fmt.Sprintf("server=%s;port=%s;user id=u;encrypt=disable", host, port),
		MaxConns: 1, // the second call waits for the first one's slot
		// The fake server speaks TDS without TLS.
		AllowInsecureTransport: true,
	})
	if err != nil {
		t.Fatalf("Open against the fake server: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	cat, err := brokertest.Catalog("orders", targets)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Lookup(brokertest.SubjectCount)

	// Far longer than the call should take, far shorter than the default
	// test timeout: a call that returns only when its context expires
	// fails the test below.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const calls = 2
	errs := make(chan error, calls)
	for i := range calls {
		c, err := brokertest.NewCall(r, `{}`, fmt.Sprintf("key-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := e.Execute(ctx, c)
			errs <- err
		}()
	}
	for range calls {
		err := <-errs
		if ctx.Err() != nil {
			t.Fatalf("Execute returned %v only when its one-minute deadline expired", err)
		}
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("Execute on a lost connection = %v, want ErrUnavailable", err)
		}
	}
	if n := dropped(); n != calls {
		t.Errorf("the server received %d call batches, want %d (one per call)", n, calls)
	}
}

// serveFake serves every connection to ln with serve, each in its own
// goroutine, until the test ends: then the listener is closed and every
// serve has returned.
func serveFake(t *testing.T, ln net.Listener, serve func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
}
