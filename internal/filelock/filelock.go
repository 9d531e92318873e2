// Package filelock takes exclusive advisory locks on files, so that two
// processes cannot use the same state (a dev data directory, an audit
// origin in a SQLite control database) at once. The kernel frees a lock
// when its process ends, so a crash leaves nothing to clean up.
package filelock

import "errors"

// ErrLocked is returned by [Lock] when another holder has the lock.
var ErrLocked = errors.New("locked by another process")
