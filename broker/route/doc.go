// Package route is sqlgate's route catalog: the admin-owned mapping from a NATS
// subject to exactly one stored procedure or admin-defined parameterized
// statement, with the database it runs in, the JSON Schema its parameters
// must satisfy, and its limits. The catalog is loaded from YAML and validated
// as a whole (every problem reported at once, unknown keys rejected).
//
// The package also owns payload decoding, the first thing that touches
// untrusted input on the request path: [Route.Decode] parses exactly one JSON
// object strictly (no duplicate keys, no trailing data, no NaN, no lone
// surrogate escape), validates it against the route's closed schema and
// returns typed parameter values.
// Message content never becomes SQL text: statements are parsed once at load
// into literal text and named placeholders ([Statement]), and adapters bind
// values as parameters.
package route
