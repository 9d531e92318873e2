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
	"math"
	"net"
	neturl "net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	// nats.json names the file for later calls from any directory.
	path := absPath(*out)
	if path == "" {
		path = e.path(natsCredsOut)
	}
	// Both files are opened before the broker is asked: a credential
	// issued into a file that cannot be written would stay valid, unused,
	// until it expired.
	credsOut, err := e.openOutput(path)
	if err != nil {
		return err
	}
	defer credsOut.discard()
	infoOut, err := e.openOutput(e.path(natsInfoFile))
	if err != nil {
		return err
	}
	defer infoOut.discard()
	cred, err := c.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: pub, TTLSeconds: int64(ttl.Seconds())})
	if err != nil {
		return err
	}
	file, err := jwt.FormatUserConfig(cred.JWT, seed)
	if err != nil {
		return revokeUnsaved(ctx, c, pub, fmt.Errorf("format creds file: %w", err))
	}
	// The inbox prefix is saved for other tools; sqlgate call derives it
	// from the creds file it uses.
	info := natsInfo{
		Creds: path, InboxPrefix: cred.InboxPrefix, NATSURL: cred.NATSURL, ExpiresAt: cred.ExpiresAt.Format(time.RFC3339),
		Principal: principal, Broker: st.Broker, UserKey: pub,
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := commitCreds(credsOut, file, infoOut, b); err != nil {
		return revokeUnsaved(ctx, c, pub, err)
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
	// The examples use what the credential grants: a route it may call and
	// an event it may follow.
	ex := exampleRequest(ctx, c, cred.Pub)
	event := exampleEvent(cred.Sub)
	if ex.subject != "" || event != "" {
		fmt.Fprintf(e.stdout, "Use it with any NATS client, e.g.:\n")
	}
	if ex.subject != "" {
		fmt.Fprintf(e.stdout, "  nats req --server %s --creds %s --inbox-prefix %s %s %s\n",
			shellWord(cred.NATSURL), shellWord(path), shellWord(cred.InboxPrefix), shellWord(ex.subject), shellQuote(ex.payload))
		if ex.note != "" {
			fmt.Fprintf(e.stdout, "    (%s)\n", ex.note)
		}
	}
	if event != "" {
		fmt.Fprintf(e.stdout, "  nats sub --server %s --creds %s %s   (keep only messages with the Sqlgate-Event header)\n",
			shellWord(cred.NATSURL), shellWord(path), shellWord(event))
	}
	return nil
}

// commitCreds puts a new creds file (creds, into credsOut) and its
// nats.json (info, into infoOut) in place together, so that a failure
// leaves the previous pair as it was: the new credential, which the caller
// then revokes, must not replace a creds file that is still valid. Both
// are written in full first; only then are they renamed into place, the
// creds file first, and when nats.json cannot be, the previous creds file
// (kept aside in a temporary file) is put back. An output written in
// place (a device such as /dev/stdout) has no previous content to keep.
func commitCreds(credsOut *output, creds []byte, infoOut *output, info []byte) error {
	if err := credsOut.stage(creds); err != nil {
		return err
	}
	if err := infoOut.stage(info); err != nil {
		return homeError(err)
	}
	if !credsOut.tmp {
		return homeError(infoOut.rename())
	}
	// What the creds file holds now, to put back if nats.json cannot be
	// put in place; none: there is no creds file to keep.
	var previous *output
	old, err := os.ReadFile(credsOut.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("write %s: keep the previous file: %w", credsOut.path, err)
	default:
		if previous, err = tempOutput(credsOut.path, ".tmp-*"); err != nil {
			return err
		}
		defer previous.discard()
		if err := previous.stage(old); err != nil {
			return err
		}
	}
	if err := credsOut.rename(); err != nil {
		return err
	}
	ierr := infoOut.rename()
	if ierr == nil {
		return nil
	}
	ierr = homeError(ierr)
	if previous == nil {
		if err := os.Remove(credsOut.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w; %s holds the new creds file (remove it: %w)", ierr, credsOut.path, err)
		}
		return ierr
	}
	if err := previous.rename(); err != nil {
		return fmt.Errorf("%w; the previous creds file could not be put back (%w): %s holds the new one", ierr, err, credsOut.path)
	}
	return ierr
}

// revokeUnsaved revokes the NATS credential of user key pub, just issued,
// whose files could not be saved (err): unsaved, nothing would use or
// revoke it. The error says whether it was revoked.
func revokeUnsaved(ctx context.Context, c *api.Client, pub string, err error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	l, rerr := c.RevokeLease(rctx, pub)
	switch {
	case rerr != nil:
		return fmt.Errorf("%w; the NATS credential issued for it (user key %s) could not be revoked (%w): it stays valid until it expires "+
			"(sqlgate leases revoke %s revokes it)", err, pub, rerr, pub)
	case l.State == "revoking":
		return fmt.Errorf("%w; the NATS credential issued for it (user key %s) is being revoked (sqlgated retries until it is)", err, pub)
	}
	return fmt.Errorf("%w; the NATS credential issued for it (user key %s) was revoked", err, pub)
}

// payloadPlaceholder stands for a payload the example cannot fill in.
const payloadPlaceholder = "PAYLOAD"

// example is the nats req that creds nats suggests: a route subject, its
// payload (or payloadPlaceholder) and a note on what to change.
type example struct {
	subject, payload, note string
}

// exampleRequest picks the route the suggested nats req calls, among the
// route subjects of pub (not the async subjects: the stream, not sqlgated,
// answers those): a route tagged read, with a payload built from the
// parameters it requires, so that the line works as pasted; a route that
// is not marked as a read gets a placeholder payload instead, because
// pasting a ready call of a route that writes would change data. The
// routes and their schemas come from the API (as sqlgate routes shows
// them); when they cannot be read, the first route of pub gets the
// placeholder.
func exampleRequest(ctx context.Context, c *api.Client, pub []string) example {
	granted := make(map[string]bool, len(pub))
	first := ""
	for _, s := range pub {
		if !strings.HasPrefix(s, "sqlgate.") {
			granted[s] = true
			if first == "" {
				first = s
			}
		}
	}
	if first == "" {
		return example{}
	}
	placeholder := func(subject string) example {
		return example{subject, payloadPlaceholder, "PAYLOAD: the JSON parameters of " + subject + ", as sqlgate routes shows them"}
	}
	routes, err := c.Routes(ctx)
	if err != nil {
		return placeholder(first)
	}
	// A read whose payload can be built; else a route not marked as a
	// write, else any, with the placeholder.
	var untagged, write string
	for _, r := range routes.Routes {
		if !granted[r.Subject] {
			continue
		}
		switch {
		case hasTag(r.Tags, "read"):
			if payload, ok := examplePayload(r.Params, r.MaxPayload); ok {
				return example{r.Subject, payload, ""}
			}
			if untagged == "" {
				untagged = r.Subject
			}
		case !hasTag(r.Tags, "write"):
			if untagged == "" {
				untagged = r.Subject
			}
		default:
			if write == "" {
				write = r.Subject
			}
		}
	}
	switch {
	case untagged != "":
		return placeholder(untagged)
	case write != "":
		ex := placeholder(write)
		ex.note += "; " + write + " is tagged write: calling it changes data"
		return ex
	}
	return placeholder(first)
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// examplePayload builds a payload that a route's parameter schema (as the
// API serves it) accepts: its required parameters with an example value
// each (a const or the first enum value, else 1 for a number within its
// bounds, "x" for a string, false for a boolean). ok is false when a
// required parameter takes a value it cannot make up (a pattern, an
// unknown format, an object, an integer only beyond ±2^53, where a
// float64 bound may not be the one written) or when the payload would be
// larger than maxPayload bytes, the route's limit (the broker's default,
// 64 KiB, when 0).
func examplePayload(schema json.RawMessage, maxPayload int) (payload string, ok bool) {
	if maxPayload <= 0 {
		maxPayload = defaultMaxPayload
	}
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if len(schema) > 0 && json.Unmarshal(schema, &s) != nil {
		return "", false
	}
	values := make(map[string]any, len(s.Required))
	for _, name := range s.Required {
		prop, found := s.Properties[name]
		if !found {
			return "", false
		}
		v, ok := exampleValue(prop, maxPayload)
		if !ok {
			return "", false
		}
		values[name] = v
	}
	b, err := json.Marshal(values)
	if err != nil || len(b) > maxPayload {
		return "", false
	}
	return string(b), true
}

// defaultMaxPayload is the broker's payload limit of a route that sets
// none (route.DefaultMaxPayload).
const defaultMaxPayload = 64 << 10

// maxExactInteger (2^53) bounds the integers an example may be: below it a
// schema bound read as a float64 is the bound written (2^53+1 reads as
// 2^53), and beyond 2^63 a float64 is no int64 at all.
const maxExactInteger = 1 << 53

// paramSchema is the part of a parameter's schema examplePayload reads.
type paramSchema struct {
	Type             json.RawMessage `json:"type"`
	Const            *any            `json:"const"`
	Enum             []any           `json:"enum"`
	Format           string          `json:"format"`
	Pattern          string          `json:"pattern"`
	MinLength        *int            `json:"minLength"`
	MaxLength        *int            `json:"maxLength"`
	Minimum          *float64        `json:"minimum"`
	Maximum          *float64        `json:"maximum"`
	ExclusiveMinimum *float64        `json:"exclusiveMinimum"`
	ExclusiveMaximum *float64        `json:"exclusiveMaximum"`
	MultipleOf       *float64        `json:"multipleOf"`
}

// formatExamples are values of the string formats a parameter commonly
// declares.
var formatExamples = map[string]string{
	"date-time": "2024-01-01T00:00:00Z",
	"date":      "2024-01-01",
	"time":      "00:00:00Z",
	"uuid":      "00000000-0000-0000-0000-000000000001",
	"email":     "x@example.com",
}

func exampleValue(raw json.RawMessage, maxLen int) (any, bool) {
	var p paramSchema
	if json.Unmarshal(raw, &p) != nil {
		return nil, false
	}
	if p.Const != nil {
		return *p.Const, true
	}
	if len(p.Enum) > 0 {
		return p.Enum[0], true
	}
	var types []string
	if json.Unmarshal(p.Type, &types) != nil {
		var one string
		if json.Unmarshal(p.Type, &one) != nil {
			return nil, false
		}
		types = []string{one}
	}
	for _, t := range types {
		switch t {
		case "integer", "number":
			return exampleNumber(p, t == "integer")
		case "string":
			return exampleString(p, maxLen)
		case "boolean":
			return false, true
		}
	}
	return nil, false
}

// exampleNumber returns 1 when the bounds allow it, else the first bound
// (or the bound's next integer) that they do.
func exampleNumber(p paramSchema, integer bool) (any, bool) {
	candidates := []float64{1}
	for _, b := range []*float64{p.Minimum, p.Maximum, p.MultipleOf} {
		if b != nil {
			candidates = append(candidates, *b, math.Ceil(*b), math.Floor(*b))
		}
	}
	if b := p.ExclusiveMinimum; b != nil {
		candidates = append(candidates, math.Floor(*b)+1)
	}
	if b := p.ExclusiveMaximum; b != nil {
		candidates = append(candidates, math.Ceil(*b)-1)
	}
	for _, v := range candidates {
		switch {
		case integer && (v != math.Trunc(v) || math.Abs(v) >= maxExactInteger),
			p.Minimum != nil && v < *p.Minimum,
			p.Maximum != nil && v > *p.Maximum,
			p.ExclusiveMinimum != nil && v <= *p.ExclusiveMinimum,
			p.ExclusiveMaximum != nil && v >= *p.ExclusiveMaximum,
			p.MultipleOf != nil && (*p.MultipleOf <= 0 || math.Abs(v/(*p.MultipleOf)-math.Round(v/(*p.MultipleOf))) > 1e-9):
			continue
		}
		if integer {
			return int64(v), true
		}
		return v, true
	}
	return nil, false
}

// exampleString returns "x", a known format's example, or minLength x's;
// none when minLength exceeds maxLen (bytes the payload may hold).
func exampleString(p paramSchema, maxLen int) (any, bool) {
	if p.Pattern != "" || (p.MinLength != nil && *p.MinLength > maxLen) {
		return nil, false
	}
	v := "x"
	if p.Format != "" {
		f, known := formatExamples[p.Format]
		if !known {
			return nil, false
		}
		v = f
	} else if p.MinLength != nil && *p.MinLength > len(v) {
		v = strings.Repeat("x", *p.MinLength)
	}
	n := utf8.RuneCountInString(v)
	if (p.MinLength != nil && n < *p.MinLength) || (p.MaxLength != nil && n > *p.MaxLength) {
		return nil, false
	}
	return v, true
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellWord returns s as one word of a POSIX shell command line: as it is
// when every character is one a shell leaves alone, else quoted (a creds
// path with a space, or with $(…), would otherwise split or run).
func shellWord(s string) string {
	plain := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)
	}
	safe := s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !plain(r) })
	if safe {
		return s
	}
	return shellQuote(s)
}

// exampleEvent returns the first emit subject of sub (not a prefix: the
// inbox and reply prefixes end in ">"), or "" for none.
func exampleEvent(sub []string) string {
	for _, s := range sub {
		if !strings.HasSuffix(s, ">") {
			return s
		}
	}
	return ""
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
		if errors.Is(err, nats.ErrNoServers) {
			return fmt.Errorf("connect to NATS at %s: %w: %s", info.NATSURL, err, natsUnreachableHint(info.NATSURL))
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
			return callPermissionError(*d, subject, *async, info.pub)
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
				return callPermissionError(*d, subject, *async, info.pub)
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

// natsUnreachableHint is what to check when no NATS server answered at
// url: whether sqlgated runs there (make run does, on this machine) and
// the URL.
func natsUnreachableHint(url string) string {
	if u, err := neturl.Parse(url); err == nil && isLoopbackHost(u.Hostname()) {
		return "is sqlgated running there (make run starts it), and is the NATS URL right?"
	}
	return "is sqlgated running there, and is the NATS URL right?"
}

// isLoopbackHost reports whether host names this machine's loopback.
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
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
			// creds nats writes a new one.
			return nil, fmt.Errorf("read %s: %w: run sqlgate creds nats", e.path(natsInfoFile), err)
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
	info.pub = uc.Pub
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

// callPermissionError is permissionError for sqlgate call. A refused
// publish of a subject that pub, the credential's publish permission, does
// not grant (sync or async) is not a route the caller may call: a typo, or
// a route policy does not give them; sqlgate routes lists those it does.
// Otherwise an async call refused its publish to
// sqlgate.async.<user key>.<subject> goes to a route that is not async (its
// credential allows only the async routes there): it says to call it
// without --async.
func callPermissionError(err error, subject string, async bool, pub jwt.Permission) error {
	msg := err.Error()
	_, target, publish := strings.Cut(msg, "for Publish to ")
	target = strings.Trim(target, `"' `)
	if publish && !mayPublish(pub, subject) && (!async || !strings.HasPrefix(target, asyncSubjectPrefix) || !mayPublish(pub, target)) {
		return fmt.Errorf("%s is not a route you may call: sqlgate routes lists them", subject)
	}
	if async && publish && strings.HasPrefix(target, asyncSubjectPrefix) {
		return fmt.Errorf("%s is not an async route (or not granted to you): call it without --async (%w)", subject, err)
	}
	return permissionError(err, subject)
}

// mayPublish reports whether p, a user JWT's publish permission, lets it
// publish to subject: no deny filter matches it, and an allow filter does
// (or none is listed, which allows all).
func mayPublish(p jwt.Permission, subject string) bool {
	matches := func(filter string) bool { return subjectMatches(filter, subject) }
	if slices.ContainsFunc(p.Deny, matches) {
		return false
	}
	return len(p.Allow) == 0 || slices.ContainsFunc(p.Allow, matches)
}

// subjectMatches reports whether the NATS subject matches filter, where
// "*" stands for one token and a final ">" for one or more.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range ft {
		switch {
		case t == ">" && i == len(ft)-1:
			return len(st) > i
		case i >= len(st), t != "*" && t != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
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
