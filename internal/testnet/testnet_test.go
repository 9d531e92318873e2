package testnet_test

import (
	"net"
	"testing"

	"github.com/sqlgate/sqlgate/internal/testnet"
)

func TestFreeAddrCanBeListenedOn(t *testing.T) {
	ln, err := net.Listen("tcp", testnet.FreeAddr(t))
	if err != nil {
		t.Fatalf("listen on the free address: %v", err)
	}
	_ = ln.Close()
}
