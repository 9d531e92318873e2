package sqlserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

// go-mssqldb's `guid conversion=true` makes the driver reorder a
// uniqueidentifier's bytes itself; the adapter already reads and writes
// them in SQL Server's order, so with both a GUID would be reordered twice.
// The adapter therefore turns the option off in the string the driver
// opens, whatever the DSN says, in either form and any spelling.
func TestGUIDConversionForcedOff(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"server=db.example.com;user id=u;encrypt=strict",
		"server=db.example.com;user id=u;encrypt=strict;guid conversion=true",
		"server=db.example.com;user id=u;encrypt=strict; Guid Conversion = yes ;database=orders",
		`server=db.example.com;user id=u;encrypt=strict;guid conversion="true"`,
		"sqlserver://u@db.example.com?encrypt=strict",
		"sqlserver://u@db.example.com?encrypt=strict&guid+conversion=true",
		"sqlserver://u@db.example.com?encrypt=strict&Guid%20Conversion=1",
	} {
		cfg := Config{Name: "orders", DSN: dsn}
		cfg.defaults()
		got, _, err := cfg.connString("")
		if err != nil {
			t.Errorf("connString(%q): %v", dsn, err)
			continue
		}
		p, err := msdsn.Parse(got)
		if err != nil {
			t.Errorf("msdsn.Parse(connString(%q)) = %v", dsn, err)
			continue
		}
		if p.Encoding.GuidConversion {
			t.Errorf("connString(%q) = %q: the driver converts GUIDs, want guid conversion off", dsn, got)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%q) = %v", dsn, err)
		}
	}
}

// A uniqueidentifier parameter reaches the server, and a uniqueidentifier
// column comes back, as the same GUID whether or not the DSN asks
// go-mssqldb for `guid conversion`.
func TestGUIDRoundTrip(t *testing.T) {
	t.Parallel()
	const id = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
	// id in SQL Server's order: its first three groups little-endian.
	wire := []byte{0xFF, 0x19, 0x96, 0x6F, 0x86, 0x8B, 0x11, 0xD0, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, 0xFF}
	guidN := []byte{0x24, 16} // GUIDTYPE, 16 bytes
	for _, tc := range []struct{ name, dsn string }{
		{"ado_default", "server=%s;port=%s;user id=u;encrypt=disable"},
		{"ado_guid_conversion", "server=%s;port=%s;user id=u;encrypt=disable;guid conversion=true"},
		{"url_guid_conversion", "sqlserver://u@%s:%s?encrypt=disable&guid+conversion=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var sent []byte
			addr := scriptedServer(t, func(typ byte, payload []byte) [][]byte {
				if typ == tdsRPC && bytes.Contains(payload, ucs2(callPrologue)) {
					// The @id parameter's value follows its type info
					// and its length.
					if i := bytes.Index(payload, append(guidN, 16)); i >= 0 && i+3+16 <= len(payload) {
						mu.Lock()
						sent = bytes.Clone(payload[i+3 : i+3+16])
						mu.Unlock()
					}
					out := statusRow(42)
					out = append(out,
						colMetadata(tdsCol{"id", guidN}),
						row(append([]byte{16}, wire...)),
						done(tokDoneInProc, doneMore|doneCount, 1),
						done(tokDoneProc, doneFinal, 0))
					return out
				}
				return [][]byte{done(tokDoneProc, doneFinal, 0)}
			})
			host, port, _ := net.SplitHostPort(addr)
			e, err := Open(context.Background(), Config{
				Name: "orders", DSN: fmt.Sprintf(tc.dsn, host, port), MaxConns: 1, MaxRetries: -1,
				// The fake server speaks TDS without TLS.
				AllowInsecureTransport: true,
			})
			if err != nil {
				t.Fatalf("Open against the fake server: %v", err)
			}
			t.Cleanup(func() { _ = e.Close() })
			cat, err := route.New([]route.Spec{{
				Subject: "orders.byid", Database: "orders", Procedure: "sales.order_by_id", Timeout: "1m",
				Params:   map[string]any{"type": "object", "properties": map[string]any{"id": map[string]any{"type": "string"}}},
				SQLTypes: map[string]string{"id": "uniqueidentifier"},
			}})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := cat.Lookup("orders.byid")
			c, err := brokertest.NewCall(r, `{"id":"`+id+`"}`, "key-1")
			if err != nil {
				t.Fatal(err)
			}

			res, err := e.Execute(t.Context(), c)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}

			mu.Lock()
			defer mu.Unlock()
			if !bytes.Equal(sent, wire) {
				t.Errorf("parameter @id sent as % x, want % x (%s)", sent, wire, id)
			}
			if !strings.Contains(string(res.JSON), `"`+id+`"`) {
				t.Errorf("Execute result = %s, want the row's id %s", res.JSON, id)
			}
		})
	}
}
