package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/internal/header"
	"github.com/sqlgate/sqlgate/web/api"
)

func cmdCredsNATS(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "creds nats", "sqlgate creds nats [-o FILE] [--ttl D]")
	broker, output := brokerFlag(fs), outputFlag(fs)
	out := fs.String("o", "", "write the creds file here (default $SQLGATE_HOME/nats.creds)")
	ttl := fs.Duration("ttl", 0, "requested lifetime (policy and configuration cap it; default: policy default)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, "sqlgate creds nats [-o FILE]"); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	c, err := e.client(*broker)
	if err != nil {
		return err
	}
	st, err := e.loadState()
	if err != nil {
		return err
	}
	principal := st.Principal
	if principal == "" { // signed in by an earlier sqlgate: ask
		who, err := c.WhoAmI(ctx)
		if err != nil {
			return err
		}
		principal = who.Issuer + " " + who.Subject
		st.Principal = principal
		if err := e.saveState(st); err != nil {
			return err
		}
	}
	// The key pair is generated here; only its public key leaves the machine.
	kp, err := nkeys.CreateUser()
	if err != nil {
		return fmt.Errorf("generate key pair: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	cred, err := c.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: pub, TTLSeconds: int64(ttl.Seconds())})
	if err != nil {
		return err
	}
	file, err := jwt.FormatUserConfig(cred.JWT, seed)
	if err != nil {
		return fmt.Errorf("format creds file: %w", err)
	}
	// nats.json names the file for later calls from any directory.
	path := absPath(*out)
	if path == "" {
		path = e.path(natsCredsOut)
	}
	if err := writeFileAtomic(path, file); err != nil {
		return err
	}
	// The inbox prefix is saved for other tools; sqlgate call derives it
	// from the creds file it uses.
	info := natsInfo{
		Creds: path, InboxPrefix: cred.InboxPrefix, NATSURL: cred.NATSURL, ExpiresAt: cred.ExpiresAt.Format(time.RFC3339),
		Principal: principal, Broker: st.Broker, UserKey: pub,
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(e.path(natsInfoFile), b); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(e.stdout, map[string]any{
			"creds": path, "expires_at": cred.ExpiresAt, "inbox_prefix": cred.InboxPrefix, "nats_url": cred.NATSURL,
			"pub": cred.Pub, "sub": cred.Sub, "decision_id": cred.DecisionID, "policy_revision": cred.PolicyRevision, "capped": cred.Capped,
		})
	}
	fmt.Fprintf(e.stdout, "NATS credentials written to %s\n", path)
	fmt.Fprintf(e.stdout, "  expires:       %s (in %s)\n", cred.ExpiresAt.Local().Format(time.RFC3339), time.Until(cred.ExpiresAt).Round(time.Second))
	if cred.Capped != "" {
		fmt.Fprintf(e.stdout, "  ttl capped:    %s\n", cred.Capped)
	}
	fmt.Fprintf(e.stdout, "  may publish:   %v\n", cred.Pub)
	fmt.Fprintf(e.stdout, "  may subscribe: %v\n", cred.Sub)
	fmt.Fprintf(e.stdout, "  inbox prefix:  %s (replies arrive only under it)\n", cred.InboxPrefix)
	fmt.Fprintf(e.stdout, "  nats url:      %s\n\n", cred.NATSURL)
	// The examples use what the credential grants: a route it may call
	// (with the payload `sqlgate routes` shows the schema of) and an event
	// it may follow.
	route, event := exampleSubjects(cred.Pub, cred.Sub)
	if route != "" || event != "" {
		fmt.Fprintf(e.stdout, "Use it with any NATS client, e.g.:\n")
	}
	if route != "" {
		fmt.Fprintf(e.stdout, "  nats req --server %s --creds %s --inbox-prefix %s %s '{}'\n", cred.NATSURL, path, cred.InboxPrefix, route)
	}
	if event != "" {
		fmt.Fprintf(e.stdout, "  nats sub --server %s --creds %s %s   (keep only messages with the Sqlgate-Event header)\n", cred.NATSURL, path, event)
	}
	return nil
}

// exampleSubjects returns the first route subject of pub (not an async
// subject: the stream, not sqlgated, answers those) and the first emit
// subject of sub (not a prefix: the inbox and reply prefixes end in ">"), or
// "" for none.
func exampleSubjects(pub, sub []string) (route, event string) {
	for _, s := range pub {
		if !strings.HasPrefix(s, "sqlgate.") {
			route = s
			break
		}
	}
	for _, s := range sub {
		if !strings.HasSuffix(s, ">") {
			event = s
			break
		}
	}
	return route, event
}

func cmdCall(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "call", "sqlgate call SUBJECT JSON|@FILE|- [--idempotency-key K] [--async [--wait]] [--creds FILE] [--nats URL]")
	creds := fs.String("creds", "", "NATS creds file (default: the one saved by sqlgate creds nats)")
	natsURL := fs.String("nats", "", "NATS URL (default: the one the broker advertised)")
	key := fs.String("idempotency-key", "", "Idempotency-Key header: a retry with the same key never applies the change twice")
	corr := fs.String("correlation-id", "", "Correlation-Id header (default: generated by the broker)")
	reason := fs.String("reason", "", "Sqlgate-Reason header (break-glass justification)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the reply")
	async := fs.Bool("async", false, "queue the call durably on an async route: wait only for the stream to store it (sqlgated runs it later; the same Idempotency-Key, called again, returns its result)")
	wait := fs.Bool("wait", false, "with --async: also wait (up to --timeout) for the answer sqlgated sends when it ran the call, and print it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 2, "sqlgate call SUBJECT JSON"); err != nil {
		return err
	}
	if *wait && !*async {
		return usagef("--wait goes with --async")
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	// The broker's rules for these headers (it would refuse the key, and
	// replace the correlation id with one of its own).
	if *key != "" && !header.Valid(*key, header.MaxIdempotencyKey) {
		return usagef("--idempotency-key must be 1 to 256 printable ASCII characters without spaces")
	}
	if *corr != "" && !header.Valid(*corr, header.MaxCorrelationID) {
		return usagef("--correlation-id must be 1 to 128 printable ASCII characters without spaces")
	}
	subject := pos[0]
	payload, err := readPayload(e, pos[1])
	if err != nil {
		return err
	}
	info, err := e.natsInfo(*creds, *natsURL)
	if err != nil {
		return err
	}
	// The server refuses a publish outside the credential's allow-list
	// asynchronously; cancel the request at once instead of waiting for the
	// timeout.
	rctx, cancel := context.WithTimeoutCause(ctx, *timeout, fmt.Errorf("no reply within %s", *timeout))
	defer cancel()
	var denied atomic.Pointer[error]
	nc, err := nats.Connect(info.NATSURL,
		nats.UserCredentials(info.Creds),
		nats.CustomInboxPrefix(info.InboxPrefix),
		nats.Name("sqlgate-cli"),
		nats.Timeout(10*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				denied.CompareAndSwap(nil, &err)
				cancel()
			}
		}),
	)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return fmt.Errorf("connect to NATS at %s: %w (expired or revoked credentials? run sqlgate creds nats)", info.NATSURL, err)
		}
		return fmt.Errorf("connect to NATS at %s: %w", info.NATSURL, err)
	}
	defer nc.Close()
	if limit := nc.MaxPayload(); limit > 0 && int64(len(payload)) > limit {
		return fmt.Errorf("the payload is %d bytes; the NATS server at %s takes at most %d per message (its max_payload)", len(payload), info.NATSURL, limit)
	}
	var replies *nats.Subscription
	msg := nats.NewMsg(subject)
	if *async {
		userKey, err := userKeyOf(info.Creds)
		if err != nil {
			return err
		}
		msg.Subject = asyncSubjectPrefix + userKey + "." + subject
		if *wait {
			// Subscribed before the call is queued, so the answer cannot be missed.
			token := make([]byte, 12)
			_, _ = rand.Read(token)
			tok := hex.EncodeToString(token)
			if replies, err = nc.SubscribeSync(replySubjectPrefix + userKey + "." + tok); err != nil {
				return err
			}
			if err := nc.Flush(); err != nil {
				return err
			}
			msg.Header.Set("Sqlgate-Reply-To", tok)
		}
	}
	msg.Data = payload
	if *key != "" {
		msg.Header.Set("Idempotency-Key", *key)
	}
	if *corr != "" {
		msg.Header.Set("Correlation-Id", *corr)
	}
	if *reason != "" {
		msg.Header.Set("Sqlgate-Reason", *reason)
	}
	reply, err := nc.RequestMsgWithContext(rctx, msg)
	if err != nil {
		if d := denied.Load(); d != nil {
			return callPermissionError(*d, subject, *async)
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("the payload with its headers is over the %d bytes the NATS server at %s takes per message (its max_payload)", nc.MaxPayload(), info.NATSURL)
		}
		if errors.Is(err, nats.ErrNoResponders) {
			if *async {
				// The credential allows only async routes here: what is
				// missing is the stream that stores them.
				return fmt.Errorf("the async call to %s was not queued: no JetStream stream answered (the stream SQLGATE_ASYNC is unavailable, "+
					"its NATS servers down, or sqlgated has not created it yet); call it again later", subject)
			}
			return fmt.Errorf("no responder for %s: not a route, or sqlgated is not running", subject)
		}
		if cause := context.Cause(rctx); cause != nil && errors.Is(err, context.DeadlineExceeded) {
			if *async {
				again := "call it again with the same --idempotency-key: it runs once"
				if *key == "" {
					again = "calling it again may run it twice (give --idempotency-key to make a retry safe)"
				}
				return fmt.Errorf("the stream did not acknowledge the async call to %s (%w): it may be unavailable, and the call may or may not be queued; %s",
					subject, cause, again)
			}
			return fmt.Errorf("request %s: %w", subject, cause)
		}
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if *async {
		// Waiting, the answer is the output and the acknowledgement a note.
		ackTo := e.stdout
		if replies != nil {
			ackTo = e.stderr
		}
		if err := printQueued(ackTo, subject, reply.Data); err != nil || replies == nil {
			return err
		}
		answer, err := replies.NextMsgWithContext(rctx)
		if err != nil {
			if d := denied.Load(); d != nil {
				return callPermissionError(*d, subject, *async)
			}
			return fmt.Errorf("queued, but no answer within %s: call %s again with the same --idempotency-key to read its result", *timeout, subject)
		}
		reply = answer
	}
	var out bytes.Buffer
	if json.Indent(&out, reply.Data, "", "  ") != nil {
		out.Reset()
		out.Write(reply.Data)
	}
	out.WriteByte('\n')
	if _, err := e.stdout.Write(out.Bytes()); err != nil {
		return err
	}
	var env struct {
		OK bool `json:"ok"`
	}
	if json.Unmarshal(reply.Data, &env) != nil || !env.OK {
		return errSilent
	}
	return nil
}

// natsInfo resolves the creds file, inbox prefix and NATS URL for a call.
// The inbox prefix comes from the creds file itself (nats.json may describe
// an earlier one), and a credential whose JWT has expired is refused here.
//
// The saved credential (no --creds) must belong to the signed-in principal:
// one saved for an earlier sign-in as someone else would act as them.
func (e *env) natsInfo(credsFlag, urlFlag string) (*natsInfo, error) {
	var info natsInfo
	saved := false
	if b, err := os.ReadFile(e.path(natsInfoFile)); err == nil {
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, fmt.Errorf("read %s: %w", e.path(natsInfoFile), err)
		}
		saved = info.Creds != ""
	}
	if credsFlag != "" {
		info.Creds = credsFlag
	} else if saved {
		st, err := e.loadState()
		if err != nil {
			return nil, err
		}
		switch {
		case st.Principal == "" || info.Principal == "":
			return nil, fmt.Errorf("the saved NATS credentials in %s do not say whose they are (saved by an earlier sqlgate): run sqlgate creds nats, or pass --creds FILE", info.Creds)
		case info.Principal != st.Principal || !sameBroker(info.Broker, st.Broker):
			return nil, fmt.Errorf("the saved NATS credentials in %s belong to %s at %s, but you are signed in as %s at %s: run sqlgate creds nats for your own, or pass --creds FILE", info.Creds, info.Principal, api.RedactURL(info.Broker), st.Principal, api.RedactURL(st.Broker))
		}
	}
	if urlFlag != "" {
		info.NATSURL = urlFlag
	}
	if info.NATSURL == "" {
		if st, err := e.loadState(); err == nil && st.NATSURL != "" {
			info.NATSURL = st.NATSURL
		}
	}
	switch {
	case info.Creds == "":
		return nil, errors.New("no NATS credentials: run sqlgate creds nats, or pass --creds FILE")
	case info.NATSURL == "":
		return nil, errors.New("no NATS URL known: pass --nats URL")
	}
	uc, err := userClaimsOf(info.Creds)
	if err != nil {
		return nil, err
	}
	if uc.Expires != 0 && time.Now().Unix() >= uc.Expires {
		return nil, fmt.Errorf("the NATS credentials in %s expired at %s: run sqlgate creds nats", info.Creds, time.Unix(uc.Expires, 0).Local().Format(time.RFC3339))
	}
	info.InboxPrefix = "_INBOX_" + uc.Subject
	return &info, nil
}

// userKeyOf returns the user public key of a creds file.
func userKeyOf(path string) (string, error) {
	uc, err := userClaimsOf(path)
	if err != nil {
		return "", err
	}
	return uc.Subject, nil
}

// userClaimsOf reads the user JWT of a creds file (not its signature: the
// NATS server checks that).
func userClaimsOf(path string) (*jwt.UserClaims, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read creds: %w: run sqlgate creds nats, or pass --creds FILE", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read creds: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, fmt.Errorf("read creds %s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("read creds %s: %w", path, err)
	}
	return uc, nil
}

// permissionError explains a NATS permissions violation: a publish outside
// the credential's allow-list, or a subscription outside it.
func permissionError(err error, subject string) error {
	msg := err.Error()
	if strings.Contains(strings.ToLower(msg), "for subscription to") {
		target := strings.Trim(msg[strings.LastIndex(msg, " to ")+len(" to "):], `"' `)
		return fmt.Errorf("the NATS server refused the subscription to %s that the call to %s needs: your credential does not allow it (%w)", target, subject, err)
	}
	return fmt.Errorf("the NATS server refused to publish to %s: your credential does not allow it (%w)", subject, err)
}

// callPermissionError is permissionError for sqlgate call: an async call
// refused its publish to sqlgate.async.<user key>.<subject> goes to a route
// that is not async (its credential allows only the async routes there), or
// one the caller may not call: it says to call it without --async.
func callPermissionError(err error, subject string, async bool) error {
	msg := err.Error()
	if async {
		if _, target, ok := strings.Cut(msg, "for Publish to "); ok && strings.HasPrefix(strings.Trim(target, `"' `), asyncSubjectPrefix) {
			return fmt.Errorf("%s is not an async route (or not granted to you): call it without --async (%w)", subject, err)
		}
	}
	return permissionError(err, subject)
}

// readPayload returns a call's payload: the argument itself, @FILE for a
// file's content, or - (or @-) for standard input.
func readPayload(e *env, arg string) ([]byte, error) {
	switch {
	case arg == "-" || arg == "@-":
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, fmt.Errorf("read the payload from standard input: %w", err)
		}
		return b, nil
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("read the payload: %w", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// checkTTL refuses a requested lifetime the broker would read as "the
// default": it counts whole seconds, so a negative or sub-second one.
func checkTTL(d time.Duration) error {
	if d < 0 || (d > 0 && d < time.Second) {
		return usagef("--ttl must be at least 1s (or 0 for the default)")
	}
	return nil
}

// asyncSubjectPrefix and replySubjectPrefix are broker.AsyncSubjectPrefix
// and broker.ReplySubjectPrefix (the CLI does not import the broker): an
// async call goes to sqlgate.async.<user key>.<route>, its answer comes on
// sqlgate.reply.<user key>.<token>.
const (
	asyncSubjectPrefix = "sqlgate.async."
	replySubjectPrefix = "sqlgate.reply."
)

// printQueued prints the stream's acknowledgement of an async call, or
// fails with the stream's error.
func printQueued(w io.Writer, subject string, data []byte) error {
	var ack struct {
		Stream    string `json:"stream"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate,omitempty"`
		Error     *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &ack); err != nil || ack.Stream == "" {
		if ack.Error != nil {
			return fmt.Errorf("the stream refused the async call to %s: %s", subject, ack.Error.Description)
		}
		return fmt.Errorf("the async call to %s got an unexpected answer %q", subject, data)
	}
	return printJSON(w, struct {
		Queued    bool   `json:"queued"`
		Subject   string `json:"subject"`
		Stream    string `json:"stream"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	}{true, subject, ack.Stream, ack.Seq, ack.Duplicate})
}
