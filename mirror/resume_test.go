package mirror_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// Upstream hiccups during a blob download: the download goes on from where
// it got to, and the clients reading it never notice. Only a digest
// mismatch reaches them, as an aborted response, and is never retried into
// a clean one.

// fastRetry keeps the download's retries quick: the tests prove what is
// retried, not how long it waits.
var fastRetry = cache.Options{Retry: cache.Retry{Backoff: 5 * time.Millisecond}}

// blobResult is what one client got for a blob GET.
type blobResult struct {
	status int
	body   []byte
	err    error
}

// whole reports whether the client got the complete, verified blob.
func (r blobResult) whole(desc ocispec.Descriptor) bool {
	return r.err == nil && r.status == http.StatusOK && int64(len(r.body)) == desc.Size && digest.FromBytes(r.body) == desc.Digest
}

// wrong reports whether the client got a clean answer with bytes that are
// not the blob's: what must never happen.
func (r blobResult) wrong(desc ocispec.Descriptor) bool {
	return r.err == nil && r.status == http.StatusOK && !r.whole(desc)
}

// concurrentGETs sends n GETs of blob desc at once. While the upstream's
// first answer is held at the gate, it waits until all n have joined the
// one download, then lets the answer go: every client reads that download
// when the fault strikes.
func (e *env) concurrentGETs(t *testing.T, g *gate, n int, desc ocispec.Descriptor) []blobResult {
	t.Helper()
	joined := metricSum(t, e.metrics, "regmirror_cache_coalesced_waiters_total", nil)
	results := make([]blobResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := e.start(context.Background(), blobPath(desc.Digest), nil)
			if err != nil {
				results[i] = blobResult{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			results[i] = blobResult{status: resp.StatusCode, body: body, err: err}
		})
	}
	waitFor(t, "every client to join the download", func() bool {
		return metricSum(t, e.metrics, "regmirror_cache_coalesced_waiters_total", nil)-joined == float64(n-1)
	})
	g.open()
	wg.Wait()
	return results
}

// blobGETs lists the Range header of each upstream GET of blob d, in order.
func blobGETs(e *env, d digest.Digest) []string {
	var ranges []string
	for _, r := range e.upstream.Requests() {
		if r.Kind == registrytest.KindBlob && r.Method == http.MethodGet && r.Reference == d.String() {
			ranges = append(ranges, r.Range)
		}
	}
	return ranges
}

func TestBlobCutHalfwayResumesForEveryReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		ignoreRange bool
	}{
		{"upstream honours Range", false},
		{"upstream ignores Range: full refetch", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGate()
			e := newEnv(t, envOptions{transport: g, cache: fastRetry})
			ix := e.pushNode(t, 1, 512<<10)
			layer := ix.Images[0].Layers[0]
			e.upstream.SetIgnoreRange(tt.ignoreRange)
			e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Truncate, Times: 1})

			for i, r := range e.concurrentGETs(t, g, 8, layer) {
				if !r.whole(layer) {
					t.Errorf("client %d: status %d, %d of %d bytes, err %v: want the whole verified blob", i, r.status, len(r.body), layer.Size, r.err)
				}
			}
			// The cut fell in the middle of the body; the second request
			// asked for the rest, whatever the upstream made of it.
			want := []string{"", fmt.Sprintf("bytes=%d-", layer.Size/2)}
			if got := blobGETs(e, layer.Digest); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("upstream blob GETs with Range %q, want %q", got, want)
			}
			if got := metricSum(t, e.metrics, "regmirror_cache_download_retries_total", nil); got != 1 {
				t.Fatalf("download retries = %v, want 1", got)
			}
			e.expectBlob(t, "library/node", layer) // from the cache now
			if n := e.upstream.BlobGets(layer.Digest); n != 2 {
				t.Fatalf("%d upstream GETs after the blob was cached, want still 2", n)
			}
		})
	}
}

func TestCorruptBlobAbortsEveryReaderAndIsNotRetried(t *testing.T) {
	t.Parallel()
	g := newGate()
	e := newEnv(t, envOptions{transport: g, cache: fastRetry})
	ix := e.pushNode(t, 1, 512<<10)
	layer := ix.Images[0].Layers[0]
	e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Corrupt, Times: 1})

	for i, r := range e.concurrentGETs(t, g, 8, layer) {
		if r.err == nil && r.status < 500 {
			t.Errorf("client %d: status %d with %d bytes and no error: want an aborted connection or a 5xx", i, r.status, len(r.body))
		}
		if int64(len(r.body)) >= layer.Size {
			t.Errorf("client %d: the aborted response carried %d of %d bytes", i, len(r.body), layer.Size)
		}
	}
	if n := e.upstream.BlobGets(layer.Digest); n != 1 {
		t.Fatalf("%d upstream GETs of the corrupt blob, want 1: a mismatch is never retried", n)
	}
	e.assertNotCached(t, layer.Digest)
	e.expectBlob(t, "library/node", layer)
	if n := e.upstream.BlobGets(layer.Digest); n != 2 {
		t.Fatalf("%d upstream GETs, want 2: the corrupt one and the next pull's", n)
	}
}

// 16 clients pull one image at once while 30% of the upstream's blob
// answers fail at random: half with a 500, half cut off mid-body.
func TestThirtyPercentBlobFaults(t *testing.T) {
	t.Parallel()
	const clients = 16
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 12, 128<<10)
	blobs := ix.Blobs()
	e.upstream.SetRandomBlobFaults(registrytest.RandomFaults{Rate: 0.3, Seed: 16})

	var mu sync.Mutex
	succeeded, wrong := 0, 0
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			ok := true
			// Each client starts at another layer, as pulls of images
			// sharing some layers do: downloads overlap and are joined
			// midway.
			for j := range blobs {
				b := blobs[(i+j)%len(blobs)]
				r := e.getBlob(b)
				mu.Lock()
				if r.wrong(b) {
					wrong++
				}
				mu.Unlock()
				if !r.whole(b) {
					ok = false
					break // a client gives up its pull at the first failed layer
				}
			}
			if ok {
				mu.Lock()
				succeeded++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	errs, cuts := e.upstream.RandomFaultsStruck()
	t.Logf("%d of %d clients pulled every blob; upstream failed %d blob GETs with a 500 and cut %d, of %d",
		succeeded, clients, errs, cuts, len(blobGETsAll(e)))
	if errs+cuts == 0 {
		t.Fatal("no fault struck: the test proves nothing")
	}
	if wrong != 0 {
		t.Fatalf("%d answers carried wrong bytes in a clean 200", wrong)
	}
	if succeeded < clients-1 {
		t.Fatalf("%d of %d clients pulled the image, want at least %d", succeeded, clients, clients-1)
	}
}

// getBlob GETs a blob from a goroutine other than the test's.
func (e *env) getBlob(desc ocispec.Descriptor) blobResult {
	resp, err := e.start(context.Background(), blobPath(desc.Digest), nil)
	if err != nil {
		return blobResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return blobResult{status: resp.StatusCode, body: body, err: err}
}

func blobGETsAll(e *env) []registrytest.Request {
	var gets []registrytest.Request
	for _, r := range e.upstream.Requests() {
		if r.Kind == registrytest.KindBlob && r.Method == http.MethodGet {
			gets = append(gets, r)
		}
	}
	return gets
}

// gate is an upstream transport that holds the answer to the first blob
// GET until it is opened.
type gate struct {
	opened chan struct{}
	once   sync.Once
}

func newGate() *gate { return &gate{opened: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
		select {
		case <-g.opened:
		case <-req.Context().Done():
			resp.Body.Close()
			return nil, req.Context().Err()
		}
	}
	return resp, err
}
