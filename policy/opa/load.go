package opa

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
)

// ErrInvalidPolicy marks a policy directory that cannot be served: a parse or
// compile error, a data file that does not decode, a broken decision contract
// (see docs/policy.md). Errors returned by [Open], [Engine.Reload] and
// reported through [ReloadEvent] and [Status] wrap it.
var ErrInvalidPolicy = errors.New("invalid policy")

// excludedBuiltins are left out of the capabilities policies are compiled
// with, so that a policy using one does not load: the first three do I/O on
// the decision path; the next four answer differently each time (random
// numbers, UUIDs and signatures); json.match_schema and json.verify_schema
// read the files a schema's "$ref": "file:///..." names; and the two
// certificate checks test validity against the machine's clock (time.Now),
// not the one the engine sets, unless a policy passes CurrentTime, which
// the compiler cannot tell. None of them would decide a replay as it decided
// the call. Of the built-ins OPA marks non-deterministic, only time.now_ns
// and io.jwt.decode_verify remain: their only varying input is the clock,
// which the engine sets (the request time in a replay).
var excludedBuiltins = []string{
	"http.send", "net.lookup_ip_addr", "opa.runtime",
	"rand.intn", "uuid.rfc4122", "io.jwt.encode_sign", "io.jwt.encode_sign_raw",
	"json.match_schema", "json.verify_schema",
	"crypto.x509.parse_and_verify_certificates", "crypto.x509.parse_and_verify_certificates_with_options",
}

// capabilities returns the OPA capabilities sqlgate serves and checks
// policies with: this OPA version's, without [excludedBuiltins] and without
// network access for schema references.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(slices.Clone(c.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(excludedBuiltins, b.Name)
	})
	c.AllowNet = []string{}
	return c
}

// parserOptions are the options every policy file is parsed with: Rego v1 and
// METADATA annotations (used for schema annotations by [Check]).
func parserOptions() ast.ParserOptions {
	return ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true, Capabilities: capabilities()}
}

// snapshot is the content of a policy directory read at one instant: the
// revision is computed over exactly the bytes that are compiled.
type snapshot struct {
	files map[string][]byte // slash-separated path relative to the root
}

// isTestFile reports whether name is a Rego test module, which is never served.
func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// isPolicyFile reports whether name is a file the engine loads: a Rego module or
// a JSON or YAML data file.
func isPolicyFile(name string) bool {
	switch path.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// dirFS is the policy directory dir as a file system, or an error that
// names dir when it is missing or not a directory (os.DirFS alone fails
// later, naming only ".").
func dirFS(dir string) (fs.FS, error) {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("policy directory %s does not exist", dir)
	case err != nil:
		return nil, fmt.Errorf("policy directory: %w", err)
	case !info.IsDir():
		return nil, fmt.Errorf("policy directory %s: not a directory", dir)
	}
	return os.DirFS(dir), nil
}

// readSnapshot reads the policy files of fsys as [walkPolicyTree] finds
// them; test modules are left out unless withTests is set.
func readSnapshot(fsys fs.FS, withTests bool) (*snapshot, error) {
	s := &snapshot{files: map[string][]byte{}}
	err := walkPolicyTree(fsys, func(p string, dir bool) error {
		if dir || !isPolicyFile(p) || (!withTests && isTestFile(p)) {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		s.files[p] = b
		return nil
	}, func(_ string, err error) error { return err })
	if err != nil {
		return nil, fmt.Errorf("read policy files: %w", err)
	}
	return s, nil
}

// walkPolicyTree walks the policy directory fsys as every reader of a policy
// (the engine, its watcher, Check, Test, Eval) sees it, calling fn for each
// directory (the root first, as ".") and each regular file, by
// slash-separated path, in lexical order.
//
// Names starting with a dot are skipped: editor swap files, .git, and a
// Kubernetes ConfigMap's ..data link and timestamped directories (the names
// a ConfigMap shows are links through ..data). Symbolic links are followed,
// to files and to directories, wherever they lead; a linked directory is
// walked under the link's name, as `opa test` does. A link that does not
// resolve, one that leads back to a directory it lies in (a cycle) and a
// directory that cannot be read are passed to fail, which returns the error
// that ends the walk, or nil to skip the entry and go on.
func walkPolicyTree(fsys fs.FS, fn func(p string, dir bool) error, fail func(p string, err error) error) error {
	root, err := fs.Stat(fsys, ".")
	if err != nil {
		return err
	}
	if err := fn(".", true); err != nil {
		return err
	}
	return walkPolicyDir(fsys, ".", []fs.FileInfo{root}, fn, fail)
}

// walkPolicyDir walks the directory dir for walkPolicyTree; parents are the
// directories it lies in, dir included, to detect cycles.
func walkPolicyDir(fsys fs.FS, dir string, parents []fs.FileInfo, fn func(string, bool) error, fail func(string, error) error) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fail(dir, err)
	}
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), ".") {
			continue
		}
		p := path.Join(dir, d.Name())
		typ := d.Type()
		var info fs.FileInfo
		switch {
		case typ&fs.ModeSymlink != 0:
			if info, err = fs.Stat(fsys, p); err != nil {
				if err := fail(p, fmt.Errorf("%s: symbolic link that does not resolve: %w", p, err)); err != nil {
					return err
				}
				continue
			}
			typ = info.Mode().Type()
		case typ.IsDir():
			if info, err = d.Info(); err != nil {
				if err := fail(p, err); err != nil {
					return err
				}
				continue
			}
		}
		switch {
		case typ.IsDir():
			// Only a link can close a cycle, and os.SameFile tells only for
			// the operating system's files, which are the only ones with links.
			if slices.ContainsFunc(parents, func(a fs.FileInfo) bool { return os.SameFile(a, info) }) {
				if err := fail(p, fmt.Errorf("%s: symbolic link cycle: it leads back to a directory it lies in", p)); err != nil {
					return err
				}
				continue
			}
			if err := fn(p, true); err != nil {
				return err
			}
			if err := walkPolicyDir(fsys, p, append(slices.Clip(parents), info), fn, fail); err != nil {
				return err
			}
		case typ.IsRegular():
			if err := fn(p, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// paths returns the snapshot's file paths in sorted order.
func (s *snapshot) paths() []string {
	ps := make([]string, 0, len(s.files))
	for p := range s.files {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// revision is the hex SHA-256 over the served files in path order; each file
// contributes its path, a NUL byte, its length as a big-endian uint64 and its
// bytes. Test modules are not part of it.
func (s *snapshot) revision() string {
	h := sha256.New()
	var n [8]byte
	for _, p := range s.paths() {
		if isTestFile(p) {
			continue
		}
		h.Write([]byte(p))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(n[:], uint64(len(s.files[p])))
		h.Write(n[:])
		h.Write(s.files[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// parsed is a snapshot parsed by OPA's loader: modules by path and the data
// document merged from the data files (each file's content placed under the
// path of its directory, as `opa eval -d DIR` and `opa test DIR` do).
type parsed struct {
	modules map[string]*ast.Module
	data    map[string]any
}

// parse parses every file of the snapshot with OPA's loader, so that data
// placement and error messages are those of the opa command. Data files that
// define a key twice are refused first: OPA would keep the last value.
func (s *snapshot) parse() (*parsed, error) {
	dups, unparsable := s.duplicateKeys()
	if len(dups) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, loader.Errors(dups))
	}
	// An in-memory copy, not the directory itself: the compiled policy must be
	// made of the bytes that were hashed.
	mem := fstest.MapFS{}
	for p, b := range s.files {
		mem[p] = &fstest.MapFile{Data: b, Mode: 0o444}
	}
	res, err := loader.NewFileLoader().
		WithFS(mem).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		WithCapabilities(capabilities()).
		All([]string{"."})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if len(unparsable) > 0 {
		// OPA read a file the duplicate check could not: refuse it rather
		// than serve it unchecked.
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, loader.Errors(unparsable))
	}
	out := &parsed{modules: make(map[string]*ast.Module, len(res.Modules)), data: res.Documents}
	for name, m := range res.Modules {
		out.modules[name] = m.Parsed
	}
	return out, nil
}

// dataConflict returns a path-conflict check for the compiler: a rule may not
// be defined where a data file already put a value.
func dataConflict(data map[string]any) func([]string) (bool, error) {
	return func(p []string) (bool, error) {
		var cur any = data
		for _, k := range p {
			m, ok := cur.(map[string]any)
			if !ok {
				return true, nil
			}
			if cur, ok = m[k]; !ok {
				return false, nil
			}
		}
		return true, nil
	}
}

// newCompiler returns a compiler with the options every policy is compiled
// with: sqlgate's capabilities, the data's path conflicts, and type checks
// against [InputSchema] (and METADATA schema annotations), so that a misspelt
// input.principal.gruops is a compile error, not a rule that silently never
// holds. Print statements are kept only when prints is set (the eval tool and
// the test modules); the serving path drops them.
func newCompiler(data map[string]any, prints bool) (*ast.Compiler, error) {
	ss, err := schemaSet()
	if err != nil {
		return nil, err
	}
	return ast.NewCompiler().
		WithCapabilities(capabilities()).
		WithEnablePrintStatements(prints).
		WithPathConflictsCheck(dataConflict(data)).
		WithSchemas(ss).
		WithUseTypeCheckAnnotations(true), nil
}

// compile compiles modules as the engine serves them (see newCompiler).
func compile(p *parsed, prints bool) (*ast.Compiler, error) {
	c, err := newCompiler(p.data, prints)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	c.Compile(p.modules)
	if c.Failed() {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, c.Errors)
	}
	return c, nil
}
