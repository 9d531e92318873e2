package sqlserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"unicode/utf16"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

// This file is a fake SQL Server that answers each request with a scripted
// reply in TDS tokens (MS-TDS 2.2.7), for the paths a real server cannot be
// made to take on demand: a routed procedure that commits and then fails,
// a server that cannot answer whether it did.

// TDS tokens and DONE status bits the replies use.
const (
	tokColMetadata = 0x81
	tokError       = 0xAA
	tokRow         = 0xD1
	tokDone        = 0xFD
	tokDoneProc    = 0xFE
	tokDoneInProc  = 0xFF

	doneFinal = 0x00
	doneMore  = 0x01
	doneError = 0x02
	doneCount = 0x10
	doneAttn  = 0x20

	// tdsAttention is the packet type of a cancel request: go-mssqldb
	// sends one when rows are closed before the reply was read to its end.
	tdsAttention = 0x06

	cmdSelect = 0xC1
)

// TDS type infos (MS-TDS 2.2.5.4): fixed-length BIT, INT4, INT8, and a
// nullable 8-byte INTN.
var (
	tdsBit   = []byte{0x32}
	tdsInt4  = []byte{0x38}
	tdsInt8  = []byte{0x7F}
	tdsIntN8 = []byte{0x26, 8}
)

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

type tdsCol struct {
	name string
	typ  []byte
}

// colMetadata starts a result set.
func colMetadata(cols ...tdsCol) []byte {
	b := []byte{tokColMetadata}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = binary.LittleEndian.AppendUint32(b, 0) // user type
		b = binary.LittleEndian.AppendUint16(b, 1) // flags: nullable
		b = append(b, c.typ...)
		b = append(b, byte(len(utf16.Encode([]rune(c.name)))))
		b = append(b, ucs2(c.name)...)
	}
	return b
}

// row is one row; each value is already in its type's wire form.
func row(vals ...[]byte) []byte {
	return append([]byte{tokRow}, bytes.Join(vals, nil)...)
}

func done(tok byte, status uint16, count uint64) []byte {
	b := []byte{tok}
	b = binary.LittleEndian.AppendUint16(b, status)
	b = binary.LittleEndian.AppendUint16(b, cmdSelect)
	return binary.LittleEndian.AppendUint64(b, count)
}

func tdsError(number int32, msg string) []byte {
	var body []byte
	body = binary.LittleEndian.AppendUint32(body, uint32(number))
	body = append(body, 1, 16) // state, class
	body = binary.LittleEndian.AppendUint16(body, uint16(len(utf16.Encode([]rune(msg)))))
	body = append(body, ucs2(msg)...)
	body = append(body, 0, 0)                                // server name, procedure name
	body = binary.LittleEndian.AppendUint32(body, uint32(1)) // line
	b := []byte{tokError}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func int8Value(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
func int4Value(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
func bitValue(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// nullIntN is NULL in an INTN column.
var nullIntN = []byte{0}

// tdsReply wraps tokens in reply packets (type 4) of at most 4096 bytes.
func tdsReply(tokens ...[]byte) []byte {
	body := bytes.Join(tokens, nil)
	var out []byte
	for id := byte(1); ; id++ {
		n := min(len(body), 4096-8)
		status := byte(0)
		if n == len(body) {
			status = 1 // end of message
		}
		out = append(out, 0x04, status)
		out = binary.BigEndian.AppendUint16(out, uint16(n+8))
		out = append(out, 0, 0, id, 0)
		out = append(out, body[:n]...)
		body = body[n:]
		if status == 1 {
			return out
		}
	}
}

// readTDSRequest reads one client message and returns its packet type and
// its payload (the packets' contents joined).
func readTDSRequest(c net.Conn) (byte, []byte, error) {
	var payload []byte
	for {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return 0, nil, err
		}
		n := int(binary.BigEndian.Uint16(h[2:4])) - len(h)
		if n < 0 {
			return 0, nil, errors.New("bad TDS packet length")
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c, p); err != nil {
			return 0, nil, err
		}
		payload = append(payload, p...)
		if h[1]&0x01 != 0 {
			return h[0], payload, nil
		}
	}
}

// scriptedServer is a fake SQL Server: it completes the login, then hands
// every request (packet type and payload) to answer, which returns the
// reply's tokens; nil closes the connection without a reply. It returns
// the server's address.
func scriptedServer(t *testing.T, answer func(typ byte, payload []byte) [][]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
			typ, payload, err := readTDSRequest(c)
			if err != nil {
				return
			}
			tokens := answer(typ, payload)
			if tokens == nil {
				return
			}
			if _, err := c.Write(tdsReply(tokens...)); err != nil {
				return
			}
		}
	}
	serveFake(t, ln, serve)
	return ln.Addr().String()
}

// openScripted opens an executor on a scripted server.
func openScripted(t *testing.T, addr string) *Executor {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	e, err := Open(context.Background(), Config{
		Name:       "orders",
		DSN:        fmt.Sprintf("server=%s;port=%s;user id=u;encrypt=disable", host, port),
		MaxConns:   1,
		MaxRetries: -1,
		// The fake server speaks TDS without TLS.
		AllowInsecureTransport: true,
	})
	if err != nil {
		t.Fatalf("Open against the fake server: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// statusRow is the call batch's status row: the record inserted in
// transaction txid.
func statusRow(txid int64) [][]byte {
	return [][]byte{
		colMetadata(
			tdsCol{"inserted", tdsBit}, tdsCol{"transaction_id", tdsInt8}, tdsCol{"request_hash", tdsIntN8},
			tdsCol{"result", tdsIntN8}, tdsCol{"rows", tdsIntN8}, tdsCol{"rows_affected", tdsIntN8},
			tdsCol{"committed_at", tdsIntN8}, tdsCol{"decision_id", tdsIntN8}),
		row(bitValue(true), int8Value(txid), nullIntN, nullIntN, nullIntN, nullIntN, nullIntN, nullIntN),
		done(tokDoneInProc, doneMore|doneCount, 1),
	}
}

// threeRows is a result set of three rows.
func threeRows() [][]byte {
	return [][]byte{
		colMetadata(tdsCol{"id", tdsInt4}),
		row(int4Value(1)), row(int4Value(2)), row(int4Value(3)),
		done(tokDoneInProc, doneMore|doneCount, 3),
	}
}

// committedAnswer is CommittedBatch's reply.
func committedAnswer(committed bool) [][]byte {
	return [][]byte{colMetadata(tdsCol{"committed", tdsBit}), row(bitValue(committed)), done(tokDoneProc, doneCount, 1)}
}

// scriptedCall is what a scripted server received for one call.
type scriptedCall struct {
	mu                            sync.Mutex
	calls, rollbacks, committedQs int
}

func (s *scriptedCall) counts() (calls, rollbacks, committedQs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.rollbacks, s.committedQs
}

// scriptCall answers the call batch with call's tokens, CommittedBatch with
// committed's (nil: the connection closes), and every other request (ping,
// table check, begin, rollback) with DONE; rollbackDrops closes the
// connection at the rollback batch instead.
func scriptCall(t *testing.T, call, committed [][]byte, rollbackDrops bool) (*Executor, *scriptedCall) {
	t.Helper()
	seen := &scriptedCall{}
	addr := scriptedServer(t, func(typ byte, payload []byte) [][]byte {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		switch {
		case typ == tdsRPC && bytes.Contains(payload, ucs2(callPrologue)):
			seen.calls++
			return call
		case typ == tdsRPC && bytes.Contains(payload, ucs2(CommittedBatch)):
			seen.committedQs++
			return committed
		case typ == tdsAttention:
			// The reply was sent whole: the acknowledgement follows it.
			return [][]byte{done(tokDone, doneAttn, 0)}
		case typ == tdsSQLBatch && bytes.Contains(payload, ucs2(RollbackBatch)):
			seen.rollbacks++
			if rollbackDrops {
				return nil
			}
		case typ != tdsSQLBatch:
			t.Errorf("fake server: unexpected request of type %#x", typ)
			return nil
		}
		return [][]byte{done(tokDoneProc, doneFinal, 0)}
	})
	return openScripted(t, addr), seen
}

// listCall is a call of a procedure route returning at most maxRows rows.
func listCall(t *testing.T, maxRows int) *broker.Call {
	t.Helper()
	cat, err := route.New([]route.Spec{{
		Subject: "orders.list", Database: "orders", Procedure: "sales.list_orders", Timeout: "1m", MaxRows: maxRows,
		Params: map[string]any{"type": "object"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Lookup("orders.list")
	c, err := brokertest.NewCall(r, `{}`, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A routed procedure that commits the call's transaction and then returns
// more rows than max_rows has committed its work and the idempotency
// record: the call asks the server (CommittedBatch) and, told so, fails
// with ErrUnavailable and ErrCommittedWithoutResult — not ErrTooManyRows,
// which the broker records as a rollback (too_many_rows) although every
// retry then replays a committed call. Told the record rolled back, the
// call fails with ErrTooManyRows.
func TestTooManyRowsAfterProcedureCommit(t *testing.T) {
	t.Parallel()
	call := append(append(statusRow(42), threeRows()...), done(tokDoneProc, doneFinal, 0))
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprint("committed_", committed), func(t *testing.T) {
			t.Parallel()
			e, seen := scriptCall(t, call, committedAnswer(committed), false)

			_, err := e.Execute(t.Context(), listCall(t, 1))

			calls, rollbacks, committedQs := seen.counts()
			if calls != 1 || committedQs != 1 || rollbacks != 1 {
				t.Fatalf("server received %d call batches, %d rollbacks, %d CommittedBatch questions; want 1 of each", calls, rollbacks, committedQs)
			}
			if !committed {
				if !errors.Is(err, broker.ErrTooManyRows) || errors.Is(err, broker.ErrUnavailable) {
					t.Errorf("Execute = %v, want ErrTooManyRows (rolled back)", err)
				}
				return
			}
			if !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, ErrCommittedWithoutResult) {
				t.Errorf("Execute = %v, want ErrUnavailable wrapping ErrCommittedWithoutResult", err)
			}
			if errors.Is(err, broker.ErrTooManyRows) {
				t.Errorf("Execute = %v wraps ErrTooManyRows: the broker would record a rollback", err)
			}
		})
	}
}

// When the server cannot say whether a call that failed after inserting
// its record committed (the question fails, has no answer, or the
// connection is gone), the call's server error is no answer either: it
// fails with ErrUnavailable, so the broker looks the key up, rather than
// as a *broker.DBError, which the broker records as a rollback.
func TestFailedCallOutcomeUnreadable(t *testing.T) {
	t.Parallel()
	call := append(statusRow(42), tdsError(50404, "order not found"), done(tokDoneProc, doneError, 0))
	tests := []struct {
		name          string
		committed     [][]byte
		rollbackDrops bool
		questions     int
	}{
		{"question_fails", [][]byte{tdsError(1222, "Lock request time out period exceeded."), done(tokDoneProc, doneError, 0)}, false, 1},
		{"no_answer_row", [][]byte{colMetadata(tdsCol{"committed", tdsBit}), done(tokDoneProc, doneCount, 0)}, false, 1},
		{"connection_lost_at_question", nil, false, 1},
		{"connection_lost_at_rollback", nil, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, seen := scriptCall(t, call, tc.committed, tc.rollbackDrops)

			_, err := e.Execute(t.Context(), listCall(t, 10))

			if calls, rollbacks, committedQs := seen.counts(); calls != 1 || rollbacks != 1 || committedQs != tc.questions {
				t.Fatalf("server received %d call batches, %d rollbacks, %d CommittedBatch questions; want 1, 1, %d", calls, rollbacks, committedQs, tc.questions)
			}
			var dbe *broker.DBError
			if errors.As(err, &dbe) || !errors.Is(err, broker.ErrUnavailable) || errors.Is(err, ErrCommittedWithoutResult) {
				t.Errorf("Execute = %v, want ErrUnavailable (outcome unknown), no DBError", err)
			}
		})
	}
	// Answered: rolled back, the server's error stands.
	t.Run("rolled_back", func(t *testing.T) {
		t.Parallel()
		e, _ := scriptCall(t, call, committedAnswer(false), false)
		_, err := e.Execute(t.Context(), listCall(t, 10))
		var dbe *broker.DBError
		if !errors.As(err, &dbe) || dbe.Number != 50404 {
			t.Errorf("Execute = %v, want the server's DBError 50404", err)
		}
	})
}
