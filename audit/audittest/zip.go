package audittest

import (
	"archive/zip"
	"bytes"
	"io"
	"testing"
)

// Unzip returns every file of a zip archive (an evidence archive, say) by
// name, failing t when data is not a readable zip. Test use only: it holds
// the whole archive in memory.
func Unzip(t testing.TB, data []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("not a zip archive: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close() // read-only
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		out[f.Name] = b
	}
	return out
}
