// Package web is sqlgate's HTTP transport: the JSON API under /api/v1 (bearer
// OIDC token or web session), the dashboard (server-rendered HTML, embedded
// static files, OIDC login with CSRF-protected forms), and the operational
// endpoints /healthz, /readyz and /metrics. Handlers return errors; one
// function maps them to a status, a safe public message and a request id,
// and logs the detail. Every answer under /api/ is JSON, a path no endpoint
// serves (404) or a method it does not take (405, with Allow) included. It reaches the broker, policy engine and audit log
// only through the small interfaces declared in this package.
package web
