package mirror_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"

	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// A client that stops reading a blob is disconnected after the send
// timeout: its handler returns (no goroutine, connection or file is held
// for good), and a client sharing the same download gets every byte.
func TestStuckClientDroppedSharedDownloadUnaffected(t *testing.T) {
	t.Parallel()
	const sendTimeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{sendTimeout: sendTimeout})
	ix := e.pushNode(t, 1, 4<<20)
	layer := ix.Images[0].Layers[0]
	fault := e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Stall, At: 64 << 10})

	stuck := dialSmallWindow(t, e.mirror.Listener.Addr().String())
	fmt.Fprintf(stuck, "GET %s HTTP/1.1\r\nHost: mirror\r\n\r\n", blobPath(layer.Digest))
	status, err := bufio.NewReader(stuck).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("the stuck client's status line: %q, %v", status, err)
	}
	<-fault.Hit()
	healthy := e.get(t, context.Background(), blobPath(layer.Digest), nil)
	defer healthy.Body.Close()
	fault.Release()

	// From here the stuck client reads nothing more.
	body, err := io.ReadAll(healthy.Body)
	if err != nil || int64(len(body)) != layer.Size || sha256Digest(body) != layer.Digest {
		t.Fatalf("the client sharing the download got %d bytes, %v", len(body), err)
	}
	waitFor(t, "the stuck client's handler to give up", func() bool {
		return metricSum(t, e.metrics, "regmirror_http_requests_total", map[string]string{"route": "blob"}) == 2
	})
	// The connection was closed: what the socket buffered, then the end.
	stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, stuck)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the stuck client's connection is still open after %d bytes", n)
	}
	if n >= layer.Size {
		t.Fatalf("the stuck client received the whole blob (%d bytes)", n)
	}
	if n := e.upstream.BlobGets(layer.Digest); n != 1 {
		t.Fatalf("%d upstream GETs, want 1 shared download", n)
	}
}

// dialSmallWindow connects with a small receive buffer, so that a client
// that does not read makes the server's writes block soon.
func dialSmallWindow(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
