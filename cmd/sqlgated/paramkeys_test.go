package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestPreviousParamKeyFiles: after a rotation of audit.paramKeyFile, the
// decision inputs recorded under the old key are still handed out (checked
// against their input_hmac) when the old key is configured in
// audit.previousParamKeyFiles; without it the log refuses them. A previous
// key file that is missing, or reuses the current key's id, stops the start.
func TestPreviousParamKeyFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	writeKey := func(name, id string, b byte) string {
		path := filepath.Join(dir, name)
		secret := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune('a'+b)), 32)))
		if err := os.WriteFile(path, []byte(id+":"+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	oldFile, newFile := writeKey("old.key", "k1", 1), writeKey("new.key", "k2", 2)

	store := audittest.NewStore()
	open := func(c AuditConfig) *audit.Log {
		t.Helper()
		pk, previous, err := auditParamKeys(c)
		if err != nil {
			t.Fatal(err)
		}
		cfg := audittest.Config(t, "sqlgate.test/paramkeys")
		cfg.ParamKey, cfg.PreviousParamKeys = pk, previous
		log, err := audit.Open(ctx, store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return log
	}
	before := open(AuditConfig{ParamKeyFile: oldFile})
	if _, err := before.AppendWithInput(ctx, &audit.Record{Kind: audit.KindDecision, CorrelationID: "c1"}, []byte(`{"params":{"amount":5000}}`)); err != nil {
		t.Fatal(err)
	}
	if err := before.Close(ctx); err != nil {
		t.Fatal(err)
	}

	inputs := func(log *audit.Log) error {
		n := 0
		err := log.Inputs(ctx, time.Time{}, func(audit.Record, []byte) error { n++; return nil })
		if err == nil && n != 1 {
			t.Errorf("inputs handed out: %d, want 1", n)
		}
		return err
	}
	dropped := open(AuditConfig{ParamKeyFile: newFile})
	if err := inputs(dropped); err == nil {
		t.Error("inputs under the rotated-away key without previousParamKeyFiles: no error, want refused")
	}
	if err := dropped.Close(ctx); err != nil {
		t.Fatal(err)
	}
	kept := open(AuditConfig{ParamKeyFile: newFile, PreviousParamKeyFiles: []string{oldFile}})
	if err := inputs(kept); err != nil {
		t.Errorf("inputs with the old key in previousParamKeyFiles: %v", err)
	}
	_ = kept.Close(ctx)

	if _, _, err := auditParamKeys(AuditConfig{ParamKeyFile: newFile, PreviousParamKeyFiles: []string{filepath.Join(dir, "missing.key")}}); err == nil || !strings.Contains(err.Error(), "previousParamKeyFiles[0]") {
		t.Errorf("missing previous key file: %v, want an error naming it", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.key")); err == nil {
		t.Error("a missing previous key file was created")
	}
	if _, _, err := auditParamKeys(AuditConfig{ParamKeyFile: newFile, PreviousParamKeyFiles: []string{writeKey("same-id.key", "k2", 3)}}); err == nil {
		t.Error("previous key with the current key's id: no error")
	}
}
