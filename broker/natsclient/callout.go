package natsclient

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// CalloutConfig configures [ConnectCallout].
type CalloutConfig struct {
	// NATSURL is the server to connect to.
	NATSURL string
	// SentinelCreds is the content of the sentinel `.creds` file that
	// `sqlgated nats-setup` writes. It grants nothing by itself.
	SentinelCreds []byte
	// Token returns the OIDC access token sent in CONNECT, on every
	// (re)connect.
	Token TokenSource
	// InboxPrefix replies arrive under ("": [InboxPrefixFromToken] of the
	// first token).
	InboxPrefix string
	// Options: see [Config].
	Options []nats.Option
	// Logger (nil: discard).
	Logger *slog.Logger
}

// ConnectCallout connects through the auth callout: the sentinel
// credentials plus the OIDC token in CONNECT (`auth_token`). The server asks
// sqlgated, which verifies the token, evaluates policy and returns a user
// JWT for a key the server generated. When that JWT expires the server
// disconnects the client; it reconnects through the callout with a fresh
// token from Token. [Client.Request] retries requests lost to such a
// disconnect as for credential clients.
func ConnectCallout(ctx context.Context, cfg CalloutConfig) (*Client, error) {
	if cfg.Token == nil || len(cfg.SentinelCreds) == 0 || cfg.NATSURL == "" {
		return nil, errors.New("natsclient: callout needs a NATS URL, sentinel creds and a token source")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	inbox := cfg.InboxPrefix
	if inbox == "" {
		tok, err := cfg.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("natsclient: get token: %w", err)
		}
		if inbox, err = InboxPrefixFromToken(tok); err != nil {
			return nil, err
		}
	}
	c := &Client{log: cfg.Logger, inbox: inbox, down: make(chan struct{}), up: make(chan struct{}), stopped: make(chan struct{})}
	close(c.up)
	tokenHandler := func() string {
		tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t, err := cfg.Token(tctx)
		if err != nil {
			c.log.WarnContext(tctx, "nats callout token unavailable", slog.String("error", err.Error()))
			return ""
		}
		return t
	}
	opts := c.options(cfg.Options, nats.UserCredentialBytes(cfg.SentinelCreds), nats.TokenHandler(tokenHandler))
	nc, err := connect(ctx, cfg.NATSURL, opts)
	if err != nil {
		return nil, fmt.Errorf("natsclient: connect through callout: %w", err)
	}
	c.nc = nc
	return c, nil
}

// PrincipalInboxPrefix is the inbox prefix of a principal's callout
// connections: "_INBOX_" and the first 128 bits, hex, of
// SHA-256(issuer + " " + subject). A callout client cannot know the user key
// the server will generate, so its JWT allows subscribing under this prefix
// instead; every connection of the principal shares it.
func PrincipalInboxPrefix(issuer, subject string) string {
	h := sha256.Sum256([]byte(issuer + " " + subject))
	return "_INBOX_" + hex.EncodeToString(h[:16])
}

// InboxPrefixFromToken reads `iss` and `sub` from a JWT access token
// (without verifying it: the prefix only has to match what the broker
// grants, which the server enforces) and returns [PrincipalInboxPrefix].
func InboxPrefixFromToken(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("natsclient: token is not a JWT; set the inbox prefix")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("natsclient: token payload is not base64url")
	}
	var claims struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Issuer == "" || claims.Subject == "" {
		return "", errors.New("natsclient: token has no iss and sub")
	}
	return PrincipalInboxPrefix(claims.Issuer, claims.Subject), nil
}
