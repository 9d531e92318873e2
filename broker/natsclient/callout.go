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
	"net/http"
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
	// BrokerURL is sqlgate's base URL. When set (and InboxPrefix is not),
	// the client asks the broker who the first token proves
	// (`GET /api/v1/whoami`) and uses that principal's
	// [PrincipalInboxPrefix], the prefix the callout grants whatever the
	// issuer's claim mapping. The URL must be https (plain http only to
	// this machine's loopback): the token travels.
	BrokerURL string
	// HTTPClient for the BrokerURL request (nil: a client with a 30s
	// timeout).
	HTTPClient *http.Client
	// InboxPrefix replies arrive under. "": asked from BrokerURL; without
	// one, [InboxPrefixFromToken] of the first token, which is the granted
	// prefix only when the issuer's subject is the token's `sub` claim
	// (not with the okta preset, nor a `claims.subject` mapping).
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
//
// Replies arrive under the inbox prefix the callout grants the principal
// (see [CalloutConfig.InboxPrefix] and [CalloutConfig.BrokerURL]). Once
// connected the client subscribes under it once: when the server refuses
// (the credential grants another prefix, whose replies would never
// arrive), ConnectCallout closes the connection and returns an error
// matching nats.ErrPermissionViolation (your error handler sees the
// server's refusal too).
func ConnectCallout(ctx context.Context, cfg CalloutConfig) (*Client, error) {
	if cfg.Token == nil || len(cfg.SentinelCreds) == 0 || cfg.NATSURL == "" {
		return nil, errors.New("natsclient: callout needs a NATS URL, sentinel creds and a token source")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	inbox, source := cfg.InboxPrefix, sourceConfig
	if inbox == "" {
		tok, err := cfg.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("natsclient: get token: %w", err)
		}
		if cfg.BrokerURL != "" {
			who, err := whoAmI(ctx, FetchConfig{BrokerURL: cfg.BrokerURL, HTTPClient: cfg.HTTPClient}, tok)
			if err != nil {
				return nil, err
			}
			inbox, source = PrincipalInboxPrefix(who.Issuer, who.Subject), sourceBroker
		} else if inbox, err = InboxPrefixFromToken(tok); err != nil {
			return nil, err
		} else {
			source = sourceToken
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
	if err := checkInbox(nc, inbox, source); err != nil {
		nc.Close()
		return nil, err
	}
	c.nc = nc
	return c, nil
}

// Where a callout client's inbox prefix came from, for the error when the
// server refuses it.
const (
	sourceConfig = "CalloutConfig.InboxPrefix is not the prefix the broker grants"
	sourceBroker = "the prefix is the one of the principal the broker's whoami named: " +
		"is BrokerURL the sqlgate behind this NATS server's auth callout?"
	sourceToken = "the prefix was computed from the token's iss and sub claims, but the issuer's subject is another claim " +
		"(the okta preset, a claims.subject mapping): set CalloutConfig.BrokerURL so that the client asks the broker"
)

// checkInbox subscribes under inbox once and reports whether the server
// refused, with source (see above). The server answers a refusal before
// the PONG of the flush (one connection, in order), so after the flush the
// refusal is known.
func checkInbox(nc *nats.Conn, inbox, source string) error {
	subject := inbox + ".check." + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		return fmt.Errorf("natsclient: subscribe under the inbox prefix: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("natsclient: subscribe under the inbox prefix: %w", err)
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
		return fmt.Errorf("natsclient: the callout credential does not allow replies under inbox prefix %s (%w); %s",
			inbox, nats.ErrPermissionViolation, source)
	}
	return nil
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
// That is the prefix the broker grants only when the issuer's subject is
// the token's `sub` claim; the broker knows in every case (see
// [CalloutConfig.BrokerURL]).
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
