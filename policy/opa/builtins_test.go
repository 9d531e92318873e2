package opa_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sqlgate/sqlgate/policy/opa"
)

// TestNonDeterministicBuiltinsAreRefused: a policy that calls a built-in
// whose answer varies from one evaluation to the next (rand.intn,
// uuid.rfc4122, a signature) or that reads the network or files
// (json.match_schema follows a schema's "$ref": "file:///...") does not
// load, since `policy replay` could not decide its calls as they were
// decided. Every built-in OPA marks non-deterministic is refused, so that a
// new one in an OPA upgrade fails here, except the two whose only varying
// input is the clock, which the engine sets. So are the certificate checks,
// which OPA does not mark but which read the machine's clock: a chain valid
// at the recorded request time and expired since was refused in a replay.
func TestNonDeterministicBuiltinsAreRefused(t *testing.T) {
	clock := []string{"time.now_ns", "io.jwt.decode_verify"}
	machineClock := []string{"crypto.x509.parse_and_verify_certificates", "crypto.x509.parse_and_verify_certificates_with_options"}
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		refused := (b.Nondeterministic || slices.Contains(machineClock, b.Name)) && !slices.Contains(clock, b.Name)
		if !refused {
			continue
		}
		t.Run(strings.ReplaceAll(b.Name, ".", "_"), func(t *testing.T) {
			args := make([]string, len(b.Decl.FuncArgs().Args))
			for i := range args {
				args[i] = "1"
			}
			src := fmt.Sprintf("package sqlgate.call\n\ndefault allow := false\n\nallow if %s(%s)\n", b.Name, strings.Join(args, ", "))
			_, err := opa.Open(t.Context(), opa.Config{FS: fstest.MapFS{"call.rego": {Data: []byte(src)}}})
			if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "undefined function "+b.Name) {
				t.Errorf("Open(policy calling %s) = %v, want it refused as an undefined function", b.Name, err)
			}
		})
	}
}
