package broker

import (
	"github.com/sqlgate/sqlgate/internal/utf8cut"
	"github.com/sqlgate/sqlgate/policy"
)

// Every decision's input is stored (audit.storeInputs), and what a client
// sends would otherwise go into it whole: a User-Agent, a NATS client's
// CONNECT name, lang and version, a Sqlgate-Reason header. The bounds below
// keep each to a size policy needs, whatever the transport admits.
const (
	// MaxClientField bounds the Host, Name, Lang and Version of the
	// [policy.Client] policy sees, in bytes.
	MaxClientField = 256
	// MaxReason bounds the request's reason (the Sqlgate-Reason header) in
	// bytes, as the HTTP revoke-all bounds its reason.
	MaxReason = 512
)

// BoundClient is c with Host, Name, Lang and Version each cut by
// [CutUTF8] to [MaxClientField] bytes. UserKey and Account are left as
// they are: the transports set them only to validated NATS public keys.
func BoundClient(c policy.Client) policy.Client {
	c.Host = CutUTF8(c.Host, MaxClientField)
	c.Name = CutUTF8(c.Name, MaxClientField)
	c.Lang = CutUTF8(c.Lang, MaxClientField)
	c.Version = CutUTF8(c.Version, MaxClientField)
	return c
}

// BoundReason is reason cut by [CutUTF8] to [MaxReason] bytes.
func BoundReason(reason string) string { return CutUTF8(reason, MaxReason) }

// CutUTF8 is s cut to at most n bytes of valid UTF-8 ([utf8cut.Cut]): an
// invalid byte becomes U+FFFD (as JSON encoding would make it), and the cut
// falls between characters.
func CutUTF8(s string, n int) string { return utf8cut.Cut(s, n) }
