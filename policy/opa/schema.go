package opa

import (
	_ "embed" // the input schema
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// InputSchema is the JSON Schema (draft-07) of the input document, the JSON
// form of [policy.Input]. Every policy is type-checked against it when it is
// compiled: by the [Engine] at each load, and by [Check], [Test] and [Eval].
//
//go:embed input.schema.json
var InputSchema []byte

// schemaSet returns the schema set policies are compiled with: the input
// schema at schema.input.
func schemaSet() (*ast.SchemaSet, error) {
	var schema any
	if err := util.UnmarshalJSON(InputSchema, &schema); err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, schema)
	return ss, nil
}
