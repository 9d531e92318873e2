package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker/route"
)

// startupRecordTimeout bounds the append of the startup record.
const startupRecordTimeout = 10 * time.Second

// catalogHash is the hex SHA-256 of the route catalog as loaded: the JSON
// encoding (encoding/json) of its routes sorted by subject, every exported
// field of [route.Route] with the defaults applied (kind, target,
// statement name and text, database, mode, batch, timeout, limits, emit,
// tags, parameters, outputs and the parameter schema as served). It
// hashes what the instance serves rather than the file's bytes: an edit
// that changes no route (a comment, the YAML layout) keeps the hash, a
// route the file does not spell out (a default) is covered, and a field
// added to [route.Route] is covered without a change here. The catalog
// holds no secret (databases are named, their credentials live in the
// configuration). The encoding is sqlgated's, not a format: compare hashes
// of the same sqlgated version (the record names it); an upgrade that
// changes a default or a route field changes the hash.
func catalogHash(c *route.Catalog) (string, error) {
	b, err := json.Marshal(c.Routes())
	if err != nil {
		return "", fmt.Errorf("encode route catalog: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// startupDetail is the detail of the startup record: "sqlgated <version>,
// route catalog sha256:<hex>, <n> routes".
func startupDetail(c *route.Catalog) (string, error) {
	h, err := catalogHash(c)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sqlgated %s, route catalog sha256:%s, %d routes", version, h, len(c.Subjects())), nil
}

// recordStartup appends the admin record [audit.AdminStartup] that says
// which sqlgated version starts serving which route catalog. The catalog is
// read at start only, so this record is what ties a restart with an edited
// catalog (a statement that now returns another column, or deletes) to the
// intents that follow. An error must fail the start: an instance whose
// configuration is not in the log must not serve.
func recordStartup(ctx context.Context, log *audit.Log, c *route.Catalog) error {
	if c == nil {
		return errors.New("startup audit record: no route catalog")
	}
	detail, err := startupDetail(c)
	if err != nil {
		return fmt.Errorf("startup audit record: %w", err)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startupRecordTimeout)
	defer cancel()
	if _, err := log.Append(actx, &audit.Record{
		Kind: audit.KindAdmin, Actor: &audit.Actor{Transport: "system"},
		Admin: &audit.Admin{Action: audit.AdminStartup, Detail: detail},
	}); err != nil {
		return fmt.Errorf("startup audit record: %w", err)
	}
	return nil
}
