package api_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestUnreachableBrokerSaysWhatToCheck: a broker nothing listens at fails
// with ErrUnreachable and what to check: that sqlgated runs there (make run
// starts it, on this machine) and that the URL is right.
func TestUnreachableBrokerSaysWhatToCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := api.NewClient("http://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Discovery(t.Context())
	const want = ": is sqlgated running there (make run starts it), and is the broker URL right?"
	if !errors.Is(err, api.ErrUnreachable) || !strings.Contains(err.Error(), "broker unreachable at "+addr) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Discovery at a closed port = %v, want ErrUnreachable ending with %q", err, want)
	}
}
