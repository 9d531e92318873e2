package natsclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/web/api"
)

// answer is a broker that answers every request with one status and body.
type answer struct {
	status int
	body   []byte
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: a.status, Status: http.StatusText(a.status), Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(a.body)), Request: r,
	}, nil
}

// fixedKey is a key pair from a fixed seed: the fuzzing engine computes the
// seeds in one process and runs them in others.
func fixedKey(f *testing.F, prefix nkeys.PrefixByte, b byte) nkeys.KeyPair {
	kp, err := nkeys.FromRawSeed(prefix, bytes.Repeat([]byte{b}, 32))
	if err != nil {
		f.Fatal(err)
	}
	return kp
}

// FuzzFetchCreds feeds arbitrary broker answers (status and body) to
// FetchCreds. Credentials are accepted only from a 200 carrying a user JWT
// for the caller's key, with an expiry and a usable inbox prefix; any other
// status is a *BrokerError with that status (ErrRefused for 400, 401 and
// 403; ErrUnauthorized for 401 and 403) carrying what an error body said,
// whatever the body; no error quotes
// the bearer token; nothing panics.
func FuzzFetchCreds(f *testing.F) {
	const token = "fuzz-bearer-token-0123456789"
	user := fixedKey(f, nkeys.PrefixByteUser, 1)
	other := fixedKey(f, nkeys.PrefixByteUser, 2)
	account := fixedKey(f, nkeys.PrefixByteAccount, 3)
	pub, _ := user.PublicKey()
	otherPub, _ := other.PublicKey()
	userJWT := func(sub string, exp int64) string {
		uc := jwt.NewUserClaims(sub)
		uc.IssuedAt, uc.Expires = 1700000000, exp
		s, err := uc.Encode(account)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	good := userJWT(pub, 4102444800)
	f.Add(200, []byte(`{"jwt":"`+good+`","expires_at":"2100-01-01T00:00:00Z","inbox_prefix":"_INBOX_`+pub+`","nats_url":"nats://127.0.0.1:4222","pub":["orders.>"],"decision_id":"d1"}`))
	f.Add(200, []byte(`{"jwt":"`+userJWT(otherPub, 4102444800)+`","inbox_prefix":"_INBOX_x"}`))
	f.Add(200, []byte(`{"jwt":"`+userJWT(pub, 0)+`","inbox_prefix":"_INBOX_x"}`))
	f.Add(200, []byte(`{"jwt":"`+good+`","inbox_prefix":"_INBOX_>"}`))
	f.Add(200, []byte(`{"jwt":"`+good+`","inbox_prefix":"_INBOX_x."}`))
	f.Add(200, []byte(`{"jwt":"`+good[:len(good)-3]+`xyz","inbox_prefix":"_INBOX_x"}`))
	f.Add(200, []byte(`{"jwt":1}`))
	f.Add(200, []byte(``))
	f.Add(400, []byte(`{"error":{"code":"invalid_request","message":"public key was revoked","reasons":["r1","r2"],"request_id":"q1"}}`))
	f.Add(401, []byte(`{"error":{"code":"unauthenticated","message":"token expired"}}`))
	f.Add(403, []byte(`{"error":{"code":"denied","reasons":null}}`))
	f.Add(429, []byte(`{"error":{"code":"rate_limited","message":"1000 live credentials"}}`))
	f.Add(502, []byte(`<html>bad gateway</html>`))
	f.Add(302, []byte(``))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			return
		}
		c, err := natsclient.FetchCreds(context.Background(), natsclient.FetchConfig{
			BrokerURL: "http://127.0.0.1:1", Token: func(context.Context) (string, error) { return token, nil },
			HTTPClient: &http.Client{Transport: answer{status, body}},
		}, user)
		var be *natsclient.BrokerError
		if err != nil {
			if strings.Contains(err.Error(), token) {
				t.Fatalf("error quotes the bearer token: %v", err)
			}
			if isBE := errors.As(err, &be); isBE != (status != http.StatusOK) {
				t.Fatalf("status %d: error %v (a *BrokerError: %v)", status, err, isBE)
			}
			if be == nil {
				return
			}
			refused := status == 400 || status == 401 || status == 403
			if be.Status != status || errors.Is(err, natsclient.ErrRefused) != refused ||
				errors.Is(err, natsclient.ErrUnauthorized) != (status == 401 || status == 403) {
				t.Fatalf("status %d: %#v (ErrRefused %v, ErrUnauthorized %v)", status, be,
					errors.Is(err, natsclient.ErrRefused), errors.Is(err, natsclient.ErrUnauthorized))
			}
			var e api.ErrorResponse
			if json.Unmarshal(body, &e) == nil && (be.Code != e.Error.Code || be.Message != e.Error.Message ||
				!slices.Equal(be.Reasons, e.Error.Reasons) || be.RequestID != e.Error.RequestID) {
				t.Fatalf("status %d: %#v, but the broker said %+v", status, be, e.Error)
			}
			return
		}
		if status != http.StatusOK {
			t.Fatalf("accepted credentials from a %d answer", status)
		}
		uc, derr := jwt.DecodeUserClaims(c.JWT)
		if derr != nil || uc.Subject != pub || c.UserKey != pub || uc.Expires == 0 || !c.ExpiresAt.Equal(time.Unix(uc.Expires, 0)) {
			t.Fatalf("accepted credentials not for the caller's key or without expiry: %+v (%v)", c, derr)
		}
		if c.InboxPrefix == "" || strings.ContainsAny(c.InboxPrefix, "*> ") || strings.HasSuffix(c.InboxPrefix, ".") {
			t.Fatalf("accepted an unusable inbox prefix %q", c.InboxPrefix)
		}
	})
}
