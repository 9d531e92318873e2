package audit_test

import "golang.org/x/mod/sumdb/tlog"

type tlogHash = tlog.Hash
