// Package testnet helps tests start servers on loopback.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address that nothing listens on at the
// moment, for a server the test starts in another process. Another
// process may take it before that server does: callers that start one
// retry on a fresh address when it fails to listen.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
