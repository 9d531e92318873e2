# METADATA
# description: |
#   The decisions as the engine makes them, for tests. The engine applies
#   deny overrides after it has evaluated an entry point (docs/policy.md §3):
#   a call or credential for which deny holds any message is refused,
#   whatever allow says, and the subjects deny_pub matches are removed from
#   pub. allow and pub alone are the rules before that: with a rule of your
#   own that allows a deny-listed principal, call.allow is true though the
#   daemon refuses the call. Tests assert through this package instead:
#
#     effective.call_allowed with input as ...
#     effective.nats_pub == {...} with input as ...
#
#   Nothing on the decision path reads it.
package sqlgate.lib.effective

import data.sqlgate.call
import data.sqlgate.nats
import data.sqlgate.sql_credentials

# call_allowed is true when the engine allows the call: allow is true and
# deny holds nothing.
call_allowed if {
	call.allow == true
	not _call_denied
}

# sql_credentials_allowed is true when the engine allows the SQL login.
sql_credentials_allowed if {
	sql_credentials.allow == true
	not _sql_credentials_denied
}

# nats_allowed is true when the engine issues the NATS credential: allow is
# true, deny holds nothing, and deny_pub did not remove every subject of pub
# from a credential that follows no event either.
nats_allowed if {
	nats.allow == true
	not _nats_denied
	not _nats_emptied
}

# nats_pub is the pub of the credential: pub without the subjects deny_pub
# matches.
nats_pub contains subject if {
	some subject in nats.pub
	not _pub_refused(subject)
}

# subject_matches(pattern, subject) is true when the NATS subject pattern
# matches subject as the engine matches deny_pub: tokens separated by dots,
# "*" matches any one token, and a final ">" one or more.
subject_matches(pattern, subject) if pattern == subject

subject_matches(pattern, subject) if {
	p := split(pattern, ".")
	s := split(subject, ".")
	count(p) == count(s)
	every i, token in p {
		_token_matches(token, s[i])
	}
}

subject_matches(pattern, subject) if {
	p := split(pattern, ".")
	p[count(p) - 1] == ">"
	s := split(subject, ".")
	count(s) >= count(p)
	every i, token in array.slice(p, 0, count(p) - 1) {
		_token_matches(token, s[i])
	}
}

_token_matches("*", _)

_token_matches(token, s) if token == s

# A deny that is undefined holds nothing; one that is not a set is refused by
# the engine, as a malformed decision.
_call_denied if count(call.deny) > 0

_call_denied if {
	deny := call.deny
	not is_set(deny)
}

_sql_credentials_denied if count(sql_credentials.deny) > 0

_sql_credentials_denied if {
	deny := sql_credentials.deny
	not is_set(deny)
}

_nats_denied if count(nats.deny) > 0

_nats_denied if {
	deny := nats.deny
	not is_set(deny)
}

_pub_refused(subject) if {
	some pattern in nats.deny_pub
	subject_matches(pattern, subject)
}

_nats_emptied if {
	count(nats.pub) > 0
	count(nats_pub) == 0
	not _follows_events
}

_follows_events if count(nats.sub) > 0
