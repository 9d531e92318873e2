package natsauth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
)

// fakeServer signs and seals authorization requests as a NATS server does.
type fakeServer struct {
	kp, xkp  nkeys.KeyPair
	id, xpub string
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	kp, _ := nkeys.CreateServer()
	xkp, _ := nkeys.CreateCurveKeys()
	id, _ := kp.PublicKey()
	xpub, _ := xkp.PublicKey()
	return &fakeServer{kp: kp, xkp: xkp, id: id, xpub: xpub}
}

func newUser(t testing.TB) string {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	p, _ := kp.PublicKey()
	return p
}

// request builds a sealed request; edit may change the claims first.
func (f *fakeServer) request(t testing.TB, keys *Keys, now time.Time, edit func(*jwt.AuthorizationRequestClaims)) ([]byte, string) {
	t.Helper()
	rc := jwt.NewAuthorizationRequestClaims(keys.pub.Auth)
	rc.Audience = calloutAudience
	rc.UserNkey = newUser(t)
	rc.Server = jwt.ServerID{Name: "n1", Host: "127.0.0.1", ID: f.id, XKey: f.xpub}
	rc.ConnectOptions.Token = "tok"
	rc.Expires = now.Add(2 * time.Second).Unix()
	signer := f.kp
	if edit != nil {
		edit(rc)
	}
	s, err := rc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := f.xkp.Seal([]byte(s), keys.pub.XKey)
	if err != nil {
		t.Fatal(err)
	}
	return sealed, f.xpub
}

func TestDecodeCalloutRequest(t *testing.T) {
	t.Parallel()
	keys, _ := GenerateKeys()
	srv := newFakeServer(t)
	other := newFakeServer(t)
	now := time.Now()
	plain := func(edit func(*jwt.AuthorizationRequestClaims)) []byte {
		rc := jwt.NewAuthorizationRequestClaims(keys.pub.Auth)
		rc.Audience = calloutAudience
		rc.UserNkey = newUser(t)
		rc.Server = jwt.ServerID{ID: srv.id, XKey: srv.xpub}
		rc.Expires = now.Add(time.Second).Unix()
		if edit != nil {
			edit(rc)
		}
		s, _ := rc.Encode(srv.kp)
		return []byte(s)
	}
	valid, vhdr := srv.request(t, keys, now, nil)
	tampered := append([]byte(nil), valid...)
	tampered[len(tampered)/2] ^= 0x55
	otherKeys, _ := GenerateKeys()
	toOther, _ := srv.request(t, otherKeys, now, nil) // sealed to someone else's xkey
	tests := []struct {
		name string
		data []byte
		hdr  string
		ok   bool
	}{
		{"valid", valid, vhdr, true},
		{"unencrypted", plain(nil), "", false},
		{"header_xkey_differs_from_claims", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.Server.XKey = other.xpub })
			return d
		}(), srv.xpub, false},
		{"garbage_header_xkey", valid, "Xnot-a-key", false},
		{"wrong_sender_xkey", valid, other.xpub, false},
		{"sealed_to_another_xkey", toOther, srv.xpub, false},
		{"tampered_ciphertext", tampered, vhdr, false},
		{"server_id_not_signer", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.Server.ID = other.id })
			return d
		}(), vhdr, false},
		{"wrong_audience", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.Audience = "x" })
			return d
		}(), vhdr, false},
		{"other_account", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.Subject = keys.pub.Users })
			return d
		}(), vhdr, false},
		{"expired", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.Expires = now.Add(-time.Minute).Unix() })
			return d
		}(), vhdr, false},
		{"no_expiry", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.Expires = 0 })
			return d
		}(), vhdr, false},
		{"no_user_nkey", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.UserNkey = "" })
			return d
		}(), vhdr, false},
		{"account_as_user_nkey", func() []byte {
			d, _ := srv.request(t, keys, now, func(rc *jwt.AuthorizationRequestClaims) { rc.UserNkey = keys.pub.Users })
			return d
		}(), vhdr, false},
		{"empty", nil, "", false},
		{"oversized", make([]byte, maxCalloutRequest+1), vhdr, false},
		{"garbage", []byte("eyJ.garbage.x"), vhdr, false},
	}
	d := newRequestDecoder(keys, 0, 0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := d.decode(tc.data, tc.hdr, now)
			if tc.ok {
				if err != nil {
					t.Fatalf("decode = %v, want ok", err)
				}
				if !nkeys.IsValidPublicUserKey(req.claims.UserNkey) || req.serverXKey != srv.xpub || req.id == "" {
					t.Errorf("decoded request = %+v", req)
				}
				return
			}
			if !errors.Is(err, ErrCalloutRequest) {
				t.Fatalf("decode = %v, want ErrCalloutRequest", err)
			}
		})
	}
	// A decoder without xkey accepts only unencrypted requests.
	noX := requestDecoder{account: keys.pub.Auth, maxToken: DefaultMaxTokenBytes, skew: time.Second}
	if _, err := noX.decode(plain(nil), "", now); err != nil {
		t.Errorf("decode(unencrypted, no xkey) = %v", err)
	}
	if _, err := noX.decode(valid, vhdr, now); !errors.Is(err, ErrCalloutRequest) {
		t.Errorf("decode(encrypted, no xkey) = %v", err)
	}
}

func TestCalloutToken(t *testing.T) {
	t.Parallel()
	d := newRequestDecoder(&Keys{}, 10, 0)
	tests := []struct {
		token string
		want  error
	}{
		{"", ErrNoToken},
		{"   ", ErrNoToken},
		{"0123456789", nil},
		{"0123456789a", ErrTokenTooLarge},
	}
	for _, tc := range tests {
		rc := &jwt.AuthorizationRequestClaims{}
		rc.ConnectOptions.Token = tc.token
		got, err := d.token(rc)
		if !errors.Is(err, tc.want) || (err == nil && got != tc.token) {
			t.Errorf("token(%d bytes) = %q, %v; want %v", len(tc.token), got, err, tc.want)
		}
	}
}

func TestCalloutDropsReplayedRequest(t *testing.T) {
	t.Parallel()
	c := &Callout{seen: map[string]int64{}, dec: requestDecoder{skew: time.Second}}
	now := time.Now()
	if c.replayed("sig-a", now.Unix(), now) {
		t.Fatal("first sighting reported as replay")
	}
	if !c.replayed("sig-a", now.Unix(), now) {
		t.Fatal("second sighting not reported as replay")
	}
	if c.replayed("sig-b", now.Unix(), now) {
		t.Fatal("another request reported as replay")
	}
}

func FuzzDecodeCalloutRequest(f *testing.F) {
	keys, _ := GenerateKeys()
	srv := newFakeServer(f)
	now := time.Now()
	valid, hdr := srv.request(f, keys, now, nil)
	f.Add(valid, hdr)
	f.Add([]byte("eyJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig"), "")
	f.Add([]byte{}, srv.xpub)
	f.Add(valid[:len(valid)/2], hdr)
	d := newRequestDecoder(keys, 0, 0)
	f.Fuzz(func(t *testing.T, data []byte, hdr string) {
		req, err := d.decode(data, hdr, now)
		if err != nil {
			if !errors.Is(err, ErrCalloutRequest) {
				t.Fatalf("decode error %v does not wrap ErrCalloutRequest", err)
			}
			return
		}
		if !nkeys.IsValidPublicUserKey(req.claims.UserNkey) || req.claims.Subject != keys.pub.Auth {
			t.Fatalf("accepted request with user %q subject %q", req.claims.UserNkey, req.claims.Subject)
		}
		if tok, err := d.token(req.claims); err == nil && (tok == "" || len(tok) > DefaultMaxTokenBytes) {
			t.Fatalf("token %d bytes accepted", len(tok))
		}
	})
}

// TestServerRefusesReplayedCalloutResponse answers the auth callout by hand:
// the first connection gets a proper response, the second gets the first
// response again. The server refuses the second client: a response names the
// server-generated user key of one connection only.
func TestServerRefusesReplayedCalloutResponse(t *testing.T) {
	t.Parallel()
	keys, _ := GenerateKeys()
	opts, err := EmbeddedOptions(keys, EmbeddedConfig{Dir: t.TempDir(), Subjects: []string{"orders.v1.create"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	cc, err := nats.Connect(s.ClientURL(), keys.CalloutUser())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	minter := NewMinter(keys)
	dec := newRequestDecoder(keys, 0, 0)
	var first []byte
	n := 0
	_, err = cc.Subscribe(calloutSubject, func(m *nats.Msg) {
		n++
		req, err := dec.decode(m.Data, m.Header.Get(serverXKeyHeader), time.Now())
		if err != nil {
			t.Errorf("decode: %v", err)
			return
		}
		if n > 1 {
			_ = m.Respond(first) // the replay
			return
		}
		u, err := minter.MintUser(t.Context(), broker.UserSpec{UserKey: req.claims.UserNkey, Name: "alice", Pub: []string{"orders.v1.create"}, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Errorf("mint: %v", err)
			return
		}
		if first, err = buildResponse(keys, req, u.JWT, ""); err != nil {
			t.Errorf("build response: %v", err)
			return
		}
		_ = m.Respond(first)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.Flush(); err != nil {
		t.Fatal(err)
	}
	sentinel, _ := keys.SentinelCreds()
	connect := func() error {
		nc, err := nats.Connect(s.ClientURL(), nats.UserCredentialBytes(sentinel), nats.Token("tok"), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(); err != nil {
		t.Fatalf("first connection with a proper response: %v", err)
	}
	err = connect()
	if err == nil {
		t.Fatal("second connection accepted with a replayed response")
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(err.Error(), "Authorization") {
		t.Errorf("replayed response: %v, want authorization violation", err)
	}
}

func TestCheckUserJWT(t *testing.T) {
	t.Parallel()
	keys, _ := GenerateKeys()
	c := &Callout{keys: keys}
	user, other := newUser(t), newUser(t)
	mint := func(edit func(*jwt.UserClaims), signer nkeys.KeyPair) string {
		uc := jwt.NewUserClaims(user)
		uc.IssuerAccount = keys.pub.Users
		uc.Expires = time.Now().Add(time.Hour).Unix()
		if edit != nil {
			edit(uc)
		}
		s, err := uc.Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	foreign, _ := nkeys.CreateAccount()
	acct, _ := keys.AccountJWTs(nil, nil)
	tests := []struct {
		name string
		jwt  string
		ok   bool
	}{
		{"valid", mint(nil, keys.usersSigning[0]), true},
		{"other_key", mint(func(uc *jwt.UserClaims) { uc.Subject = other }, keys.usersSigning[0]), false},
		{"other_account", mint(func(uc *jwt.UserClaims) { uc.IssuerAccount = keys.pub.Broker }, keys.usersSigning[0]), false},
		{"foreign_signer", mint(nil, foreign), false},
		{"account_key_signer", mint(nil, keys.users), false},
		{"no_expiry", mint(func(uc *jwt.UserClaims) { uc.Expires = 0 }, keys.usersSigning[0]), false},
		{"account_jwt", acct.Users, false},
		{"garbage", "not.a.jwt", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		if err := c.checkUserJWT(tc.jwt, user); (err == nil) != tc.ok {
			t.Errorf("%s: checkUserJWT = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
