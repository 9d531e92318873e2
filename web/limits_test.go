package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// clientBroker records the client of each NATS credential request.
type clientBroker struct {
	fakeBroker
	clients []policy.Client
}

func (b *clientBroker) IssueNATS(ctx context.Context, req broker.NATSRequest) (*broker.NATSCredential, error) {
	b.clients = append(b.clients, req.Client)
	return b.fakeBroker.IssueNATS(ctx, req)
}

// maxClientName bounds the client name (the User-Agent) that policy and
// the audit log see (requestClient: broker.BoundClient).
const maxClientName = broker.MaxClientField

func TestClientName(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct{ in, want string }{
		{"sqlgate/1.4 (linux)", "sqlgate/1.4 (linux)"},
		{"", ""},
		{long, long[:maxClientName]},
		// A cut falls between characters: 85 three-byte runes are 255 bytes.
		{strings.Repeat("€", 100), strings.Repeat("€", 85)},
		// Invalid bytes become U+FFFD, counted as the three bytes they take.
		{"ok\xff\xfe", "ok\uFFFD\uFFFD"},
		{strings.Repeat("\xff", 300), strings.Repeat("\uFFFD", 85)},
	}
	for _, tc := range tests {
		got := broker.CutUTF8(tc.in, maxClientName)
		if got != tc.want || len(got) > maxClientName || !utf8.ValidString(got) {
			t.Errorf("CutUTF8(%.20q… %d bytes) = %.20q… (%d bytes), want %.20q… (%d bytes)", tc.in, len(tc.in), got, len(got), tc.want, len(tc.want))
		}
	}
}

// TestClientNameBounded: a huge User-Agent reaches neither policy nor the
// audit log whole (each decision's input is stored): every endpoint that
// passes the client on (NATS and SQL credentials, renewal, revocation)
// cuts it to maxClientName bytes of valid UTF-8.
func TestClientNameBounded(t *testing.T) {
	ua := "evil/" + strings.Repeat("é", 500<<10)
	check := func(what string, c policy.Client) {
		t.Helper()
		if len(c.Name) > maxClientName || !utf8.ValidString(c.Name) || !strings.HasPrefix(ua, c.Name) || len(c.Name) < maxClientName-1 {
			t.Errorf("%s: client name of %d bytes (valid UTF-8 %v), want the User-Agent cut to %d", what, len(c.Name), utf8.ValidString(c.Name), maxClientName)
		}
	}
	post := func(s *Server, method, path, token, body string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("User-Agent", ua)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}

	b := &clientBroker{}
	ns, err := New(Config{Broker: b, Auth: tokenAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	if w := post(ns, "POST", api.Prefix+"/nats/creds", "token-alice", `{"public_key":"U"}`); w.Code != http.StatusOK || len(b.clients) != 1 {
		t.Fatalf("nats/creds = %d %s", w.Code, w.Body)
	}
	check("nats/creds", b.clients[0])

	s, f := newSQLTestServer(t)
	if w := post(s, "POST", api.Prefix+"/sql/creds", "alice", `{"database":"orders","role":"reader","ttl_seconds":600}`); w.Code != http.StatusOK || len(f.issued) != 1 {
		t.Fatalf("sql/creds = %d %s", w.Code, w.Body)
	}
	check("sql/creds", f.issued[0].Client)
	var id string
	for id = range f.leases {
	}
	if w := post(s, "POST", api.Prefix+"/leases/"+id+"/renew", "alice", ""); w.Code != http.StatusOK {
		t.Fatalf("renew = %d %s", w.Code, w.Body)
	}
	if w := post(s, "DELETE", api.Prefix+"/leases/"+id, "alice", ""); w.Code != http.StatusOK {
		t.Fatalf("revoke = %d %s", w.Code, w.Body)
	}
	if len(f.clients) != 2 {
		t.Fatalf("clients passed on: %d, want 2", len(f.clients))
	}
	check("renew", f.clients[0])
	check("revoke", f.clients[1])
	if got := requestClient(httptest.NewRequest("GET", "/", nil)).Name; got != "" {
		t.Errorf("client name without a User-Agent = %q", got)
	}
}
