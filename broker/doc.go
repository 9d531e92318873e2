// Package broker holds sqlgate's use cases — the request path (identify ->
// route -> validate -> decide -> record -> execute -> record -> reply),
// credential issuance and leases — and declares the ports it needs from the
// outside world: [Executor] (SQL adapters), [Authorizer] (the policy engine),
// [Recorder] (the audit log), [Registry] (who a NATS user key was issued to).
// Transports (broker/natsvc, web) call into it; adapters implement its ports.
// It imports no SQL driver, no NATS library and no policy engine.
package broker
