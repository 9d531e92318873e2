package natsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/web/api"
)

// TokenSource returns a current OIDC access token for the broker (for
// example an oauth2.TokenSource's AccessToken). It is called for every
// credential fetch and, on the callout path, every (re)connect.
type TokenSource func(ctx context.Context) (string, error)

// ErrUnauthorized is returned when the broker refuses the token (401) or
// the policy refuses the credential (403).
var ErrUnauthorized = errors.New("natsclient: not authorized")

// ErrRefused matches a refusal: the broker answered 400 (a revoked key:
// "public key was revoked"), 401 (a refused or expired token, an
// offboarded principal) or 403 (denied by policy, or the policy could not
// be evaluated), or the NATS server refused the credentials the broker
// issued. Some pass (a policy outage, a token the token source renews); a
// [Client] retries them and stops when they persist or the broker answered
// 400 (see [Client] and [Client.Err]).
var ErrRefused = errors.New("natsclient: refused")

// BrokerError is a non-200 answer of the broker's `POST nats/creds` (or,
// for [ConnectCallout] with a BrokerURL, `GET whoami`), with what the
// broker said: its error code, message and reasons.
type BrokerError struct {
	Status    int
	Code      string
	Message   string
	Reasons   []string
	RequestID string
}

// Error implements error.
func (e *BrokerError) Error() string {
	msg := fmt.Sprintf("natsclient: broker answered %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if len(e.Reasons) > 0 {
		msg += " (" + strings.Join(e.Reasons, "; ") + ")"
	}
	if e.RequestID != "" {
		msg += " [request " + e.RequestID + "]"
	}
	return msg
}

// Is makes a 401 or 403 match [ErrUnauthorized], and a 400, 401 or 403
// match [ErrRefused].
func (e *BrokerError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrRefused:
		return e.Status == http.StatusBadRequest || e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	}
	return false
}

// Creds is a NATS user credential issued by the broker for a key pair the
// caller generated.
type Creds struct {
	// JWT is the user JWT; UserKey its subject (the key pair's public key).
	JWT     string
	UserKey string
	// ExpiresAt is the JWT's expiry; IssuedAt when it was signed.
	ExpiresAt, IssuedAt time.Time
	// InboxPrefix is the only inbox prefix the credential may subscribe under.
	InboxPrefix string
	// NATSURL is the NATS URL the broker advertises.
	NATSURL string
	// Pub lists the subjects the credential may publish to.
	Pub        []string
	DecisionID string
	// Capped explains a TTL reduction by the broker ("" when none).
	Capped string

	// received is when the response arrived, by this machine's clock: the
	// client schedules refreshes from it (plus the lifetime the broker's
	// clock gave), so that a skewed clock does not make it refresh early
	// and often.
	received time.Time
}

// FetchConfig says where and how to ask for credentials.
type FetchConfig struct {
	// BrokerURL is sqlgate's base URL; the request goes to
	// BrokerURL + "/api/v1/nats/creds".
	BrokerURL string
	Token     TokenSource
	// TTL asks for a lifetime (0: the broker's default); policy caps it.
	TTL time.Duration
	// HTTPClient (nil: a client with a 30s timeout).
	HTTPClient *http.Client
}

const maxResponse = 1 << 20

// FetchCreds asks the broker for a user JWT for kp's public key (only the
// public key travels) and checks that the JWT it returns is for that key and
// expires. The broker URL must be https (plain http only to this machine's
// loopback): the bearer token would cross the network in clear. A refusal
// is a [*BrokerError] with the broker's reason. Errors never contain the
// token.
func FetchCreds(ctx context.Context, cfg FetchConfig, kp nkeys.KeyPair) (*Creds, error) {
	if err := api.RequireTLS("broker", cfg.BrokerURL); err != nil {
		return nil, fmt.Errorf("natsclient: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, errors.New("natsclient: key pair is not a user key")
	}
	if cfg.Token == nil {
		return nil, errors.New("natsclient: no token source")
	}
	token, err := cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsclient: get token: %w", err)
	}
	body, _ := json.Marshal(api.NATSCredsRequest{PublicKey: pub, TTLSeconds: int64(cfg.TTL / time.Second)})
	data, err := askBroker(ctx, cfg.HTTPClient, http.MethodPost, strings.TrimRight(cfg.BrokerURL, "/")+api.Prefix+"/nats/creds", token, body, "creds")
	if err != nil {
		return nil, err
	}
	var nc api.NATSCreds
	if err := json.Unmarshal(data, &nc); err != nil {
		return nil, fmt.Errorf("natsclient: decode creds response: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(nc.JWT)
	if err != nil {
		return nil, fmt.Errorf("natsclient: creds response carries no valid user jwt: %w", err)
	}
	switch {
	case uc.Subject != pub:
		return nil, errors.New("natsclient: creds response is for another key")
	case uc.Expires == 0:
		return nil, errors.New("natsclient: creds response jwt has no expiry")
	case nc.InboxPrefix == "" || strings.ContainsAny(nc.InboxPrefix, "*> ") || strings.HasSuffix(nc.InboxPrefix, "."):
		return nil, errors.New("natsclient: creds response has no usable inbox prefix")
	}
	return &Creds{
		JWT: nc.JWT, UserKey: pub,
		ExpiresAt:   time.Unix(uc.Expires, 0),
		IssuedAt:    time.Unix(uc.IssuedAt, 0),
		InboxPrefix: nc.InboxPrefix,
		NATSURL:     nc.NATSURL,
		Pub:         nc.Pub,
		DecisionID:  nc.DecisionID,
		Capped:      nc.Capped,
		received:    time.Now(),
	}, nil
}

// brokerError is the broker's non-200 answer. The broker answers
// {"error": {...}} (api.ErrorResponse); a proxy in front of it may answer
// anything, which leaves the status only.
func brokerError(status int, body []byte) *BrokerError {
	var e api.ErrorResponse
	_ = json.Unmarshal(body, &e)
	return &BrokerError{
		Status: status, Code: e.Error.Code, Message: e.Error.Message,
		Reasons: e.Error.Reasons, RequestID: e.Error.RequestID,
	}
}

// whoAmI asks the broker's `GET /api/v1/whoami` who token proves, under
// the same rules as [FetchCreds] (https, a refusal is a [*BrokerError],
// errors never contain the token).
func whoAmI(ctx context.Context, cfg FetchConfig, token string) (*api.WhoAmI, error) {
	if err := api.RequireTLS("broker", cfg.BrokerURL); err != nil {
		return nil, fmt.Errorf("natsclient: %w", err)
	}
	data, err := askBroker(ctx, cfg.HTTPClient, http.MethodGet, strings.TrimRight(cfg.BrokerURL, "/")+api.Prefix+"/whoami", token, nil, "whoami")
	if err != nil {
		return nil, err
	}
	var who api.WhoAmI
	if err := json.Unmarshal(data, &who); err != nil || who.Issuer == "" || who.Subject == "" {
		return nil, errors.New("natsclient: whoami response names no issuer and subject")
	}
	return &who, nil
}

// CredsFile formats c and the key pair's seed as a NATS `.creds` file for
// other clients (`nats --creds FILE`, any NATS library). The result holds the
// seed: write it with mode 0600.
func CredsFile(c *Creds, kp nkeys.KeyPair) ([]byte, error) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("natsclient: seed: %w", err)
	}
	b, err := jwt.FormatUserConfig(c.JWT, seed)
	if err != nil {
		return nil, fmt.Errorf("natsclient: format creds: %w", err)
	}
	return b, nil
}

// askBroker sends one request to the broker's API with the bearer token
// (a JSON body when body is set) and returns the body of a 200 answer; any
// other answer is the broker's error ([brokerError]). what names the
// request in errors.
func askBroker(ctx context.Context, hc *http.Client, method, url, token string, body []byte, what string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("natsclient: %s request: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	// No redirect is followed: Go would resend the bearer token (and the
	// body) to the new location, over plain http when it says so.
	noRedirect := http.Client{Timeout: 30 * time.Second}
	if hc != nil {
		noRedirect = *hc
	}
	noRedirect.CheckRedirect = api.RefuseRedirect
	resp, err := noRedirect.Do(req)
	if err != nil {
		return nil, fmt.Errorf("natsclient: %s request: %w", what, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("natsclient: read %s response: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, brokerError(resp.StatusCode, data)
	}
	return data, nil
}
