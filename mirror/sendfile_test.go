package mirror_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readFromSpy sits between net/http and the mirror and counts what reaches
// the response writer's ReadFrom: net.TCPConn sends an *os.File, or an
// io.LimitedReader of one, with sendfile(2), and anything else through a
// user-space buffer.
type readFromSpy struct {
	http.ResponseWriter
	files, others *atomic.Int64 // ReadFrom calls
}

func (s *readFromSpy) ReadFrom(src io.Reader) (int64, error) {
	r := src
	if lr, ok := src.(*io.LimitedReader); ok {
		r = lr.R
	}
	if _, ok := r.(*os.File); ok {
		s.files.Add(1)
	} else {
		s.others.Add(1)
	}
	return s.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
}

func (s *readFromSpy) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// A warm blob, whole or a range of it, goes from the cache file to the
// connection's ReadFrom as an *os.File, which net/http sends with
// sendfile(2); a cold read, whose bytes are checked as they stream, never
// hands it a file.
func TestWarmBlobReachesSendfile(t *testing.T) {
	t.Parallel()
	var files, others atomic.Int64
	spy := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(&readFromSpy{ResponseWriter: w, files: &files, others: &others}, r)
		})
	}
	e := newEnv(t, envOptions{wrap: spy})
	ix := e.pushNode(t, 1, 3<<20)
	layer := ix.Images[0].Layers[0]

	e.expectBlob(t, "library/node", layer)
	if n := files.Load(); n != 0 {
		t.Fatalf("the cold read handed ReadFrom a file %d times: its bytes were not checked as they streamed", n)
	}
	e.expectBlob(t, "library/node", layer)
	warm := files.Load()
	if warm == 0 {
		t.Fatalf("the warm read never handed ReadFrom a file (%d other readers)", others.Load())
	}

	whole := e.do(t, http.MethodGet, blobPath(layer.Digest), nil).body
	for _, rng := range []struct{ header, want string }{
		{"bytes=1000-1999999", string(whole[1000:2000000])},
		{"bytes=-5000", string(whole[len(whole)-5000:])},
	} {
		before := files.Load()
		got := e.do(t, http.MethodGet, blobPath(layer.Digest), http.Header{"Range": {rng.header}})
		if got.status != http.StatusPartialContent || string(got.body) != rng.want {
			t.Fatalf("Range %s = %d with %d bytes, want 206 with %d", rng.header, got.status, len(got.body), len(rng.want))
		}
		if files.Load() == before {
			t.Errorf("the warm read of Range %s never handed ReadFrom a file", rng.header)
		}
	}
	if n := e.upstream.BlobGets(layer.Digest); n != 1 {
		t.Fatalf("%d upstream GETs, want 1", n)
	}
}

// A client that stops reading a warm blob, sent with sendfile, is
// disconnected after the send timeout, as on the streaming path.
func TestStuckClientDroppedFromWarmBlob(t *testing.T) {
	t.Parallel()
	const sendTimeout = 200 * time.Millisecond
	e := newEnv(t, envOptions{sendTimeout: sendTimeout})
	ix := e.pushNode(t, 1, 16<<20)
	layer := ix.Images[0].Layers[0]
	warming := warmUnderShortSendTimeout(t, e, "library/node", layer)
	blobRequests := func() float64 {
		return metricSum(t, e.metrics, "regmirror_http_requests_total", map[string]string{"route": "blob"})
	}

	stuck := dialSmallWindow(t, e.mirror.Listener.Addr().String())
	fmt.Fprintf(stuck, "GET %s HTTP/1.1\r\nHost: mirror\r\n\r\n", blobPath(layer.Digest))
	status, err := bufio.NewReader(stuck).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("the stuck client's status line: %q, %v", status, err)
	}
	// From here the stuck client reads nothing more.
	waitFor(t, "the stuck client's handler to give up", func() bool {
		return blobRequests() == float64(warming+1)
	})
	stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, stuck)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the stuck client's connection is still open after %d bytes", n)
	}
	if n >= layer.Size {
		t.Fatalf("the stuck client received the whole blob (%d bytes)", n)
	}
}

// warmUnderShortSendTimeout caches desc through the mirror. With a send
// timeout this short, a loaded machine can keep the test's own client from
// reading in time, and the mirror rightly drops it; the download goes on
// without it, so a later GET finds the blob. It returns how many GETs it
// made.
func warmUnderShortSendTimeout(t *testing.T, e *env, repo string, desc ocispec.Descriptor) int {
	t.Helper()
	for attempt := 1; ; attempt++ {
		got := e.do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+desc.Digest.String(), nil)
		if got.err == nil && got.status == http.StatusOK && int64(len(got.body)) == desc.Size {
			return attempt
		}
		if attempt == 5 {
			t.Fatalf("GET blob %s = %d, %v, after %d attempts", desc.Digest, got.status, got.err, attempt)
		}
	}
}
