// Package opa is sqlgate's policy engine: it decides every routed call, NATS
// credential and SQL credential ([policy.Entry]) with Rego v1 policies
// (github.com/open-policy-agent/opa/v1), and it holds the tooling behind
// `sqlgate policy test|eval|check|replay`.
//
// An [Engine] loads a policy directory (or an fs.FS such as rules.FS),
// compiles it once, type-checked against [InputSchema] (a misspelt input
// field refuses the policy), and prepares one query per entry point;
// decisions reuse the prepared queries and never compile. A reload (file watch with debounce, or
// [Engine.Reload]) builds a complete new state and swaps it atomically; a
// policy that fails to load leaves the last good one serving and is reported
// (log, [Engine.Status], [Config.OnReload]). With no policy loaded every
// decision is a deny. Every decision carries a fresh UUIDv7 and the policy
// revision: the SHA-256 over the served files.
//
// # Decision document
//
// The decision of entry E is formed by the rules of package data.sqlgate.E:
// allow (a boolean), reasons (a set or array of strings), deny (a set of
// strings), for nats deny_pub (a set of subject patterns), and the
// obligations [DecisionKeys] lists for E (call: max_rows, timeout_ms,
// redact_params; nats: ttl, pub, sub; sql_credentials: ttl). Deny overrides
// allow, enforced here and not by the policy's rules: a non-empty deny makes
// the decision a deny with deny's messages as its reasons whatever allow
// says, and the subjects deny_pub matches are removed from pub whatever rule
// added them, so that an allow or pub rule a policy adds cannot escape the
// refusals written as deny rules (the default library's deny list and MFA).
// Rules of the package whose
// names start with an underscore are helpers and not part of the decision;
// so are rules of any other package (data.sqlgate.lib.*). Any other rule in
// an entry package, a package nested under one, a rule of a parent package
// whose ref head reaches into one (package sqlgate with
// call.max_rows := 10), or data placed there is an error when the policy
// loads, found by inspecting the modules: an unknown or unqueried obligation
// is never silently ignored. A policy may also define
// data.sqlgate.lint.problems, a set of messages about its own configuration;
// the engine refuses to serve a policy for which it is not empty.
//
// Decide fails closed: an evaluation error (a built-in function's error
// included, such as a division by zero: queries evaluate with strict built-in
// errors, so such an expression does not become undefined and let a `not`
// hold), the evaluation timeout, an undefined or non-boolean allow, a deny or
// deny_pub that is not a set of strings, or a malformed obligation is a deny
// with a reason and an error wrapping [policy.ErrEvaluation].
//
// docs/policy.md documents the input document, the decision document, the
// default library (policy/rules) and the commands.
package opa
