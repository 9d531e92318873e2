// Package rules holds sqlgate's default Rego policy library and the dev-mode
// demo policy, embedded as [FS].
//
// The directory is a standard OPA policy directory: `opa fmt`, `opa check` and
// `opa test` work on it unchanged, as does `sqlgate policy test`. It contains
//
//   - data.yaml: the configuration the library reads (data.sqlgate.config),
//     route by route; as shipped it is the demo: sales may create (amount up
//     to 1000), get and cancel orders, support may only get them, auditors
//     may call nothing, and services holding the app role orders.writer (the
//     dev client orders-service) may create (amount up to 1000) and get
//     orders;
//   - sqlgate/call.rego, sqlgate/nats.rego, sqlgate/sql_credentials.rego: the
//     three entry points (data.sqlgate.call, .nats, .sql_credentials);
//   - sqlgate/lib/*.rego: route grants to groups and app roles, per-group and
//     per-role parameter limits, business hours, MFA-required routes,
//     break-glass access and deny lists;
//   - sqlgate/lint.rego: checks of data.yaml (data.sqlgate.lint.problems),
//     which policy/opa refuses to serve when they report anything;
//   - *_test.rego: tests of each module.
//
// `sqlgated dev` copies FS into its data directory on first start (for
// example with os.CopyFS) so that the policy can be edited while it runs.
// docs/policy.md describes the library and the decision contract.
package rules

import "embed"

// FS is the policy directory: data.yaml at its root, the Rego modules and their
// tests under sqlgate/.
//
//go:embed data.yaml sqlgate
var FS embed.FS
