package control_test

import (
	"net/url"
	"strings"
	"testing"
)

// replaceDatabase returns dsn (URL or key=value form) pointing at database name.
func replaceDatabase(t *testing.T, dsn, name string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}
