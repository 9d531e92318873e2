package main

import (
	"slices"
	"strings"
	"testing"
)

// TestEveryCommandTakesHelp checks that `sqlgate <command> --help` prints
// the command's usage and exits 0 for every command, version included
// (which also runs without SQLGATE_HOME).
func TestEveryCommandTakesHelp(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	withHome := func(k string) string {
		if k == "SQLGATE_HOME" {
			return home
		}
		return ""
	}
	var walk func(path []string, cmds map[string]*command)
	walk = func(path []string, cmds map[string]*command) {
		for name, c := range cmds {
			p := slices.Concat(path, []string{name})
			if c.sub != nil {
				walk(p, c.sub)
				continue
			}
			t.Run(strings.Join(p, "_"), func(t *testing.T) {
				t.Parallel()
				var out, errOut strings.Builder
				args := slices.Concat(p, []string{"--help"})
				if code := runEnv(t.Context(), args, strings.NewReader(""), &out, &errOut, withHome); code != 0 || !strings.Contains(errOut.String(), "usage: sqlgate "+strings.Join(p, " ")) {
					t.Errorf("sqlgate %s: exit %d, stderr %q; want exit 0 and the usage", strings.Join(args, " "), code, errOut.String())
				}
			})
		}
	}
	walk(nil, commands())

	t.Run("version_without_sqlgate_home", func(t *testing.T) {
		t.Parallel()
		var out, errOut strings.Builder
		noEnv := func(string) string { return "" }
		if code := runEnv(t.Context(), []string{"version", "--help"}, strings.NewReader(""), &out, &errOut, noEnv); code != 0 || !strings.Contains(errOut.String(), "usage: sqlgate version") || out.Len() != 0 {
			t.Errorf("sqlgate version --help: exit %d, stdout %q, stderr %q; want exit 0 and the usage", code, out.String(), errOut.String())
		}
	})
}
