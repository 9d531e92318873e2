package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/web/api"
)

// FuzzLeaseCursor: the `cursor` query parameter of the lease list is client
// input. A value the server accepts names a position that the server writes
// back as a cursor naming the same position; a position the server wrote is
// read back as itself; anything else is a 400.
func FuzzLeaseCursor(f *testing.F) {
	for _, c := range []leaseCursor{{1, "0190f0b8-0000-7000-8000-000000000001"}, {-1, "a.b"}, {0, "x"}} {
		f.Add(c.String(), c.issuedAt, c.id)
	}
	f.Add("", int64(0), "")
	f.Add("!!", int64(1), "é")
	f.Add("MTIzLg", int64(1)<<62, "id")
	f.Fuzz(func(t *testing.T, v string, issuedAt int64, id string) {
		c, err := parseLeaseCursor(v)
		if err != nil {
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
				t.Fatalf("parseLeaseCursor(%q) error %v, want a 400", v, err)
			}
		} else {
			if c.id == "" {
				t.Fatalf("parseLeaseCursor(%q) accepted an empty id", v)
			}
			if back, err := parseLeaseCursor(c.String()); err != nil || back != c {
				t.Fatalf("cursor %+v from %q written as %q reads back as %+v, %v", c, v, c.String(), back, err)
			}
		}
		if id == "" {
			return
		}
		want := leaseCursor{issuedAt: issuedAt, id: id}
		if got, err := parseLeaseCursor(want.String()); err != nil || got != want {
			t.Fatalf("server cursor %+v read back as %+v, %v", want, got, err)
		}
	})
}

func newFuzzSQLServer(tb testing.TB) (*Server, *fakeSQLLeases) {
	tb.Helper()
	fl := &fakeSQLLeases{leases: map[string]broker.Lease{}}
	s, err := New(Config{
		Broker: sqlTestBroker{}, Auth: sqlTestAuth{}, AdminGroups: []string{"admins"}, SQLLeases: fl,
		Now: func() time.Time { return time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s, fl
}

// strictly reports whether body decodes into a fresh v as decodeJSON does:
// one JSON object, no unknown fields, nothing after it, and its members
// named exactly (case included) by names, each at most once. (The request
// types are flat: a member that is itself an object does not decode.)
func strictly(body string, v any, names ...string) bool {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return false
	}
	got, ok := memberNames(body)
	if !ok {
		return false
	}
	seen := map[string]bool{}
	for _, n := range got {
		if seen[n] || !slices.Contains(names, n) {
			return false
		}
		seen[n] = true
	}
	return true
}

// memberNames lists the names of a JSON object's members in order,
// repeats included (none for null, which decodes as no member); ok is
// false when body is neither.
func memberNames(body string) (names []string, ok bool) {
	dec := json.NewDecoder(strings.NewReader(body))
	tok, err := dec.Token()
	if err == nil && tok == nil {
		return nil, true
	}
	if err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		name, isName := tok.(string)
		if err != nil || !isName {
			return nil, false
		}
		names = append(names, name)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, false
		}
	}
	return names, true
}

// FuzzSQLRequestBodies throws arbitrary bodies at the API endpoints that
// decode one (SQL credentials, lease renewal, revoke-all). Every answer is a
// JSON envelope with a client status, never a 5xx; a body that does not
// decode strictly into the endpoint's request (a member named twice, or
// not exactly as the field, included) is a 400 (413 when too long) that
// reaches no lease operation; an accepted body is one that decodes.
func FuzzSQLRequestBodies(f *testing.F) {
	for _, b := range []string{
		`{"database":"orders","role":"reader"}`, `{"database":"orders","role":"reader","ttl_seconds":60}`,
		`{"database":"orders","role":"reader","ttl_seconds":-1}`, `{"database":"orders'; DROP TABLE leases; --","role":"r"}`,
		`{"ttl_seconds":3600}`, ``, ` `, `{}`, `[]`, `null`, `{`, `{"x":1}`, `{"ttl_seconds":"60"}`, `{"ttl_seconds":1e99}`,
		`{"principal":"https://idp.test alice","reason":"left"}`, `{"principal":""}`, `{"database":"a","role":"b"}{}`, "\x00",
		`{"principal":"https://idp.test alice","principal":"https://idp.test bob"}`, `{"PRINCIPAL":"https://idp.test alice"}`,
		`{"database":"orders","Role":"reader"}`, `{"database":"orders","role":"reader","role":"admin"}`, `{"TTL_seconds":60}`,
	} {
		for ep := range uint8(3) {
			f.Add(ep, b)
		}
	}
	s, fl := newFuzzSQLServer(f)
	f.Fuzz(func(t *testing.T, ep uint8, body string) {
		type endpoint struct {
			path, token string
			req         func() any
			names       []string
		}
		e := []endpoint{
			{api.Prefix + "/sql/creds", "alice", func() any { return new(api.SQLCredsRequest) }, []string{"database", "role", "ttl_seconds"}},
			{api.Prefix + "/leases/0190f0b8-0000-7000-8000-000000000001/renew", "alice", func() any { return new(api.LeaseRenewRequest) }, []string{"ttl_seconds"}},
			{api.Prefix + "/leases/revoke-all", "dana", func() any { return new(api.RevokeAllRequest) }, []string{"principal", "reason"}},
		}[int(ep)%3]
		issued, clients, reasons := len(fl.issued), len(fl.clients), len(fl.reasons)
		r := httptest.NewRequest(http.MethodPost, e.path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+e.token)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("POST %s %q: status %d %s", e.path, body, w.Code, w.Body)
		}
		decodes := strictly(body, e.req(), e.names...)
		if strings.HasSuffix(e.path, "/renew") && strings.TrimSpace(body) == "" {
			decodes = true // an empty renewal body asks for the default TTL
		}
		if w.Code == http.StatusOK && !decodes {
			t.Fatalf("POST %s accepted a body that does not decode: %q", e.path, body)
		}
		if w.Code != http.StatusOK {
			var env api.ErrorResponse
			if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || env.Error.Code == "" {
				t.Fatalf("POST %s %q: status %d body %q is not an error envelope", e.path, body, w.Code, w.Body)
			}
		}
		if !decodes {
			if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("POST %s %q: status %d, want 400 or 413", e.path, body, w.Code)
			}
			if len(fl.issued) != issued || len(fl.clients) != clients || len(fl.reasons) != reasons {
				t.Fatalf("POST %s %q: a malformed body reached the lease operations", e.path, body)
			}
		}
	})
}
