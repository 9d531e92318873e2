package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
)

// isBadRequest reports whether err is the 400 the API answers.
func isBadRequest(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusBadRequest
}

// FuzzAuditQuery reads arbitrary query values of the audit API: since
// (records, policy inputs), from and to (the evidence period; the record
// range of verify and export) and proofs (export). A refused value is a
// 400; an accepted one lies within the bounds the handlers rely on (a
// period between 1970 and 2262 in UTC, a range [from, to) of non-negative
// indexes, at most MaxProofSizes tree sizes above 0) and reads back as
// itself when written the way the CLI writes it.
func FuzzAuditQuery(f *testing.F) {
	for _, v := range []string{
		"", "2026-11-27", "2026-11-27T10:00:00Z", "2026-11-27T10:00:00.5+02:00", "24h", "-1h", "0", "1h30m",
		"1969-12-31", "2262-04-11", "2262-04-11T00:00:00.000000001Z", "9999-12-31T23:59:59Z", "0001-01-01",
		"1,2,3", "5", "-5", "+5", "007", ",", "1,,2", "9223372036854775807", "9223372036854775808",
		strings.Repeat("1,", audit.MaxProofSizes) + "1", "2026-02-30", "2026-11-27T24:00:00Z", "now",
	} {
		f.Add(v, "0")
	}
	f.Add("0", "10")
	f.Add("10", "10")
	now := time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v, w string) {
		since, err := sinceParam(v, now)
		switch {
		case err != nil:
			if !isBadRequest(err) {
				t.Fatalf("sinceParam(%q): %v, want a 400", v, err)
			}
		case v == "":
			if !since.IsZero() {
				t.Fatalf("sinceParam(\"\") = %v, want the start of the log", since)
			}
		default:
			if _, perr := time.Parse(time.RFC3339, v); perr != nil && since.After(now) {
				t.Fatalf("sinceParam(%q) = %v: a duration back from now is in the future", v, since)
			}
		}

		q := url.Values{"from": {v}, "to": {w}, "proofs": {v}}
		r := httptest.NewRequest(http.MethodGet, "/api/v1/audit/evidence?"+q.Encode(), nil)
		if p, err := periodParam(r, "from"); err != nil {
			if !isBadRequest(err) {
				t.Fatalf("periodParam(%q): %v, want a 400", v, err)
			}
		} else {
			if p.Location() != time.UTC || p.Before(minPeriod) || p.After(maxPeriod) {
				t.Fatalf("periodParam(%q) = %v: outside the period the log's timestamps hold", v, p)
			}
			if d, derr := time.Parse(time.DateOnly, v); derr == nil && !d.Equal(p) {
				t.Fatalf("periodParam(%q) = %v, want midnight UTC", v, p)
			}
			back := httptest.NewRequest(http.MethodGet, "/?from="+url.QueryEscape(p.Format(time.RFC3339Nano)), nil)
			if again, err := periodParam(back, "from"); err != nil || !again.Equal(p) {
				t.Fatalf("periodParam(%q) = %v, which reads back as %v, %v", v, p, again, err)
			}
		}

		if sizes, err := proofSizes(v); err != nil {
			if !isBadRequest(err) {
				t.Fatalf("proofSizes(%q): %v, want a 400", v, err)
			}
		} else {
			if len(sizes) > audit.MaxProofSizes || (v == "") != (sizes == nil) {
				t.Fatalf("proofSizes(%q) = %v", v, sizes)
			}
			parts := make([]string, len(sizes))
			for i, n := range sizes {
				if n <= 0 {
					t.Fatalf("proofSizes(%q) = %v: a tree size of %d", v, sizes, n)
				}
				parts[i] = strconv.FormatInt(n, 10)
			}
			if again, err := proofSizes(strings.Join(parts, ",")); err != nil || fmt.Sprint(again) != fmt.Sprint(sizes) {
				t.Fatalf("proofSizes(%q) = %v, which reads back as %v, %v", v, sizes, again, err)
			}
		}

		if from, to, err := rangeParams(r); err != nil {
			if !isBadRequest(err) {
				t.Fatalf("rangeParams(from=%q, to=%q): %v, want a 400", v, w, err)
			}
		} else if from < 0 || to < 0 || (to != 0 && to <= from) {
			t.Fatalf("rangeParams(from=%q, to=%q) = [%d, %d)", v, w, from, to)
		}
	})
}

// FuzzFlashCookie reads arbitrary flash cookies, as a sibling site may
// plant them. The dashboard shows nothing, a fixed text, or a text with a
// value this server signed for this session and this message; a message
// the server set reads back as itself (its value cut to maxFlashValue);
// the cookie is cleared whenever there is one; nothing panics.
func FuzzFlashCookie(f *testing.F) {
	srv := &Server{}
	alice := &session{id: "alice-session-cookie"}
	mallory := &session{id: "mallory-session-cookie"}
	setCookie := func(sess *session, id, value string) string {
		w := httptest.NewRecorder()
		srv.redirectWithFlash(w, httptest.NewRequest(http.MethodPost, "/", nil), sess, id, value)
		for _, c := range w.Result().Cookies() {
			if c.Name == flashCookie {
				return c.Value
			}
		}
		return ""
	}
	signed := map[string]bool{} // id + "\x00" + value the server signed for alice
	for _, id := range []string{flashSignedOut, flashSQLRevoked, flashSQLRevoking, flashNATSRevoked} {
		for _, value := range []string{"sg_alice_x", "UABC", ""} {
			f.Add(setCookie(alice, id, value), id, value, true)
			f.Add(setCookie(mallory, id, value), id, value, true)
			signed[id+"\x00"+value] = true
		}
	}
	f.Add("sql-revoked.eA.eA", "x", "x", true)
	f.Add("call-it", "call-it", "", false)
	f.Add("sql-revoked..", flashSQLRevoked, strings.Repeat("v", 200), true)
	f.Fuzz(func(t *testing.T, value, id, setValue string, signedIn bool) {
		var sess *session
		if signedIn {
			sess = alice
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: flashCookie, Value: value})
		w := httptest.NewRecorder()
		got := srv.takeFlash(w, r, sess)
		if len(r.CookiesNamed(flashCookie)) > 0 {
			cleared := false
			for _, c := range w.Result().Cookies() {
				cleared = cleared || c.Name == flashCookie && c.MaxAge < 0
			}
			if !cleared {
				t.Fatalf("flash cookie %q not cleared", value)
			}
		}
		if got != "" && !shownFlash(got, sess, signed) {
			t.Fatalf("flash cookie %q (signed in: %v) shows %q, which this server did not sign for the session", value, signedIn, got)
		}

		// What the server sets reads back as itself.
		text, known := flashTexts[id]
		if !known {
			return
		}
		if !strings.Contains(text, "%s") {
			setValue = "" // as the handlers set it: a text without a value gets none
		}
		v := setCookie(alice, id, setValue)
		if v == "" {
			t.Fatalf("redirectWithFlash(%q, %q) set no cookie", id, setValue)
		}
		r = httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", flashCookie+"="+v)
		back := srv.takeFlash(httptest.NewRecorder(), r, alice)
		want := text
		if strings.Contains(text, "%s") {
			want = ""
			if setValue != "" {
				want = fmt.Sprintf(text, clip(setValue, maxFlashValue))
			}
		}
		if back != want {
			t.Fatalf("flash %q with %q set as %q reads back as %q, want %q", id, setValue, v, back, want)
		}
	})
}

// shownFlash reports whether got is a text the dashboard may show to
// sess: a text without a value, or one with a value signed for it.
func shownFlash(got string, sess *session, signed map[string]bool) bool {
	for id, text := range flashTexts {
		if !strings.Contains(text, "%s") {
			if got == text {
				return true
			}
			continue
		}
		prefix, suffix, _ := strings.Cut(text, "%s")
		value, ok := strings.CutPrefix(got, prefix)
		if value, ok2 := strings.CutSuffix(value, suffix); ok && ok2 && sess != nil && signed[id+"\x00"+value] {
			return true
		}
	}
	return false
}

// FuzzPolicyEvalBody decodes arbitrary bodies of POST /api/v1/policy/eval
// as the handler does. A body that is not one JSON object naming entry,
// input and explain exactly, each once, is a 400 (413 past the limit);
// the input document may hold any JSON but a name twice in an object.
func FuzzPolicyEvalBody(f *testing.F) {
	for _, b := range []string{
		`{"entry":"call","input":{"principal":{"issuer":"https://idp.test","subject":"alice"}},"explain":true}`,
		`{"entry":"call","input":{"a":1,"a":2}}`, `{"entry":"call","input":[{"a":1},{"a":1}]}`, `{"Entry":"call"}`,
		`{"entry":"call","entry":"nats"}`, `{"entry":"call","input":null}`, `{"input":"x"}{}`, `{"explain":"yes"}`,
		`{"entry":"call","input":{"A":1,"a":2}}`, ``, `null`, `[]`, `{"entry":"call","other":1}`,
	} {
		f.Add(b)
	}
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, body string) {
		var req evalRequest
		r := httptest.NewRequest(http.MethodPost, "/api/v1/policy/eval", strings.NewReader(body))
		err := decodeJSON(r, limit, &req)
		if err != nil {
			var he *HTTPError
			if !errors.As(err, &he) || (he.Status != http.StatusBadRequest && he.Status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("decodeJSON(%q): %v, want a 400 or 413", body, err)
			}
			if he.Status == http.StatusRequestEntityTooLarge && len(body) <= limit {
				t.Fatalf("decodeJSON(%q): 413 for %d bytes", body, len(body))
			}
			if len(body) <= limit && strictly(body, new(evalRequest), "entry", "input", "explain") && noRepeatedName(body) {
				t.Fatalf("decodeJSON refused %q: %v", body, err)
			}
			return
		}
		if !strictly(body, new(evalRequest), "entry", "input", "explain") || !noRepeatedName(body) {
			t.Fatalf("decodeJSON accepted %q", body)
		}
		if req.Input != nil && !json.Valid(req.Input) {
			t.Fatalf("decodeJSON(%q) gave the input %q", body, req.Input)
		}
	})
}

// noRepeatedName reports whether no object of the JSON value body names a
// member twice.
func noRepeatedName(body string) bool {
	type frame struct {
		object, wantKey bool
		names           map[string]bool
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(strings.NewReader(body))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			name, _ := tok.(string)
			if stack[n-1].names[name] {
				return false
			}
			stack[n-1].names[name] = true
			stack[n-1].wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true, names: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}
