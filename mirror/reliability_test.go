package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// Upstream faults on blobs: whatever goes wrong, a client never gets a
// clean 200 with wrong bytes, nothing is indexed, no temp file stays, and
// the next request (or a resume) gets the right bytes once the upstream
// is healthy.

func TestCorruptBlobAbortsClientAndCountsMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 256<<10)
	layer := ix.Images[0].Layers[0]
	e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Corrupt, Times: 1})

	// Usually the headers are out when the digest fails to match, and the
	// connection is aborted; a download that fails first is a plain 502.
	bad := e.do(t, http.MethodGet, blobPath(layer.Digest), nil)
	if bad.err == nil && bad.status < 500 {
		t.Fatalf("GET of a corrupt blob = %d with %d bytes and no error: want an aborted connection or a 5xx", bad.status, len(bad.body))
	}
	if int64(len(bad.body)) >= layer.Size {
		t.Fatalf("the aborted response still carried %d of %d bytes", len(bad.body), layer.Size)
	}
	e.assertNotCached(t, layer.Digest)
	if got := metricSum(t, e.metrics, "regmirror_cache_digest_mismatches_total", nil); got != 1 {
		t.Fatalf("digest mismatches = %v, want 1", got)
	}

	e.expectBlob(t, "library/node", layer)
	if n := e.upstream.BlobGets(layer.Digest); n != 2 {
		t.Fatalf("%d upstream GETs, want 2: the corrupt one and a fresh one", n)
	}
}

// A body that runs past its Content-Length is an error to the client, and
// not retried into a clean answer; a resume at the offset it got to works
// once the upstream is healthy. (A body that ends early is resumed by the
// download itself: see TestBlobCutHalfwayResumesForEveryReader.)
func TestLongBlobBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		inject func(e *env, tp *tamper, layer ocispec.Descriptor)
	}{
		{"longer than Content-Length", func(_ *env, tp *tamper, layer ocispec.Descriptor) {
			tp.set(tamperRule{blob: layer.Digest, extra: []byte("trailing garbage"), times: 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tp := &tamper{}
			e := newEnv(t, envOptions{transport: tp})
			ix := e.pushNode(t, 1, 256<<10)
			layer := ix.Images[0].Layers[0]
			tt.inject(e, tp, layer)
			full, err := e.upstream.Blob(layer.Digest)
			if err != nil {
				t.Fatal(err)
			}

			// The download fails either after the headers went out (an
			// aborted body) or before (a 5xx), depending on how fast it fails.
			bad := e.do(t, http.MethodGet, blobPath(layer.Digest), nil)
			offset := int64(12345)
			switch {
			case bad.err != nil:
				if !bytes.Equal(bad.body, full[:len(bad.body)]) {
					t.Fatal("the bytes sent before the abort are wrong")
				}
				offset = int64(len(bad.body)) // resume where it stopped, as a client would
			case bad.status < 500:
				t.Fatalf("GET = %d with %d bytes and no error, want an aborted connection or a 5xx", bad.status, len(bad.body))
			}
			e.assertNotCached(t, layer.Digest)

			resumed := e.do(t, http.MethodGet, blobPath(layer.Digest), http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}})
			if resumed.err != nil || resumed.status != http.StatusPartialContent {
				t.Fatalf("resume at %d = %d, %v", offset, resumed.status, resumed.err)
			}
			if want := fmt.Sprintf("bytes %d-%d/%d", offset, layer.Size-1, layer.Size); resumed.header.Get("Content-Range") != want {
				t.Fatalf("Content-Range %q, want %q", resumed.header.Get("Content-Range"), want)
			}
			if !bytes.Equal(resumed.body, full[offset:]) {
				t.Fatal("resumed bytes differ from the blob's")
			}
			if n := e.upstream.BlobGets(layer.Digest); n != 2 {
				t.Fatalf("%d upstream GETs, want 2", n)
			}
			e.expectBlob(t, "library/node", layer)
			if n := e.upstream.BlobGets(layer.Digest); n != 2 {
				t.Fatalf("%d upstream GETs after the resume cached it, want still 2", n)
			}
		})
	}
}

// A download that receives nothing for the stall timeout is abandoned: the
// client's connection is aborted and the upstream connection closed, at
// about the timeout, and neither goroutines nor file descriptors remain.
// Not parallel: it counts the process's goroutines and descriptors.
func TestStalledUpstreamClosesBothConnections(t *testing.T) {
	const stall = 300 * time.Millisecond
	e := newEnv(t, envOptions{cache: cache.Options{StallTimeout: stall}})
	ix := e.pushNode(t, 1, 256<<10)
	layer := ix.Images[0].Layers[0]
	// Warm up what stays open across requests (the upstream connection and
	// token), then count descriptors.
	e.expectBlob(t, "library/node", ix.Images[0].Config)
	e.mirror.Client().CloseIdleConnections()
	baseFDs := openFDs(t)
	fault := e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Stall})

	start := time.Now()
	got := e.do(t, http.MethodGet, blobPath(layer.Digest), nil)
	took := time.Since(start)
	if got.err == nil {
		t.Fatalf("GET of a stalled blob = %d without error", got.status)
	}
	select {
	case <-fault.Hit():
	default:
		t.Fatal("the upstream never stalled")
	}
	// Generous slack: this bounds a hang, it does not measure speed.
	if took > stall+5*time.Second {
		t.Fatalf("the client waited %v for a %v stall timeout", took, stall)
	}
	waitFor(t, "the stalled upstream request to end", func() bool {
		return e.upstream.CountRequests(func(r registrytest.Request) bool {
			return r.Kind == registrytest.KindBlob && r.Status == 0
		}) == 0
	})
	e.assertNotCached(t, layer.Digest)

	e.mirror.Client().CloseIdleConnections()
	e.mirror.CloseClientConnections()
	waitFor(t, "the mirror's goroutines for the download to end", func() bool {
		return !goroutinesMatch("cache.(*Store).fill", "mirror.(*Mirror).serveBlob", "registrytest.(*faultWriter).strike")
	})
	waitFor(t, "file descriptors to return to their count before the stall", func() bool {
		return openFDs(t) <= baseFDs
	})
	t.Logf("stall timeout %v: the client's connection was aborted after %v; open descriptors %d before, %d after",
		stall, took.Round(time.Millisecond), baseFDs, openFDs(t))
}

// An HTML page, a document that is not a manifest, one naming malformed
// digests, or one over 4 MiB is refused with a 502 in the OCI format, and
// nothing of it is cached: not the manifest, not the tag.
func TestInvalidUpstreamManifestsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	layer := func(d string) string {
		return `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + validDigest + `","size":2},` +
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + d + `","size":1}]}`
	}
	tests := []struct {
		name, mediaType, body string
	}{
		{"html", "text/html", "<html><body>Service Unavailable</body></html>"},
		{"html as a manifest type", ocispec.MediaTypeImageManifest, "<html><body>login</body></html>"},
		{"invalid JSON", mediaTypeDockerManifest, `{"schemaVersion":2,"mediaType":`},
		{"JSON that is no manifest", "application/json", `{"hello":"world"}`},
		{"schema version 1", mediaTypeDockerManifest, `{"schemaVersion":1,"name":"x","fsLayers":[]}`},
		{"media type disagrees", ocispec.MediaTypeImageIndex, layer(validDigest)},
		{"image manifest without config", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"layers":[]}`},
		{"layer digest with a path", ocispec.MediaTypeImageManifest, layer("sha256:../../etc/passwd")},
		{"layer digest in upper case", ocispec.MediaTypeImageManifest, layer(strings.ToUpper(validDigest))},
		{"layer digest too short", ocispec.MediaTypeImageManifest, layer(validDigest[:len(validDigest)-1])},
		{"layer digest of unknown algorithm", ocispec.MediaTypeImageManifest, layer("md5:d41d8cd98f00b204e9800998ecf8427e")},
		// Served as plain JSON: the test registry refuses to store an index it cannot parse.
		{"index child digest with a path", "application/json",
			`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[{"mediaType":"` +
				ocispec.MediaTypeImageManifest + `","digest":"sha256:../x","size":1}]}`},
		{"over 4 MiB", ocispec.MediaTypeImageManifest, layer(validDigest) + strings.Repeat(" ", 4<<20)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tag := fmt.Sprintf("bad%d", i)
			d, err := e.upstream.PutManifest("library/node", tag, tt.mediaType, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"/v2/library/node/manifests/" + tag, "/v2/library/node/manifests/" + d.String()} {
				got := e.do(t, http.MethodGet, path, nil)
				if got.status != http.StatusBadGateway {
					t.Fatalf("GET %s = %d %s, want 502", path, got.status, got.body)
				}
				assertOCIError(t, got, "UNAVAILABLE")
			}
			if _, _, err := e.store.Manifest(context.Background(), d); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the invalid manifest was cached: %v", err)
			}
			if _, _, err := e.store.Tag(context.Background(), "docker.io/library/node", tag); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a tag points at the invalid manifest: %v", err)
			}
		})
	}
}

// A manifest body that never ends is cut off at 4 MiB: a prompt 502, not a
// hang or an unbounded buffer.
func TestEndlessManifestBodyIsCutOff(t *testing.T) {
	t.Parallel()
	tp := &tamper{}
	e := newEnv(t, envOptions{transport: tp})
	ix := e.pushNode(t, 1, 1024)
	tp.set(tamperRule{manifest: ix.Descriptor.Digest, endless: true})

	got := e.do(t, http.MethodGet, "/v2/library/node/manifests/"+ix.Descriptor.Digest.String(), nil)
	if got.status != http.StatusBadGateway {
		t.Fatalf("GET of an endless manifest = %d %s, want 502", got.status, got.body)
	}
	assertOCIError(t, got, "UNAVAILABLE")
	sent := tp.endlessSent()
	if sent > 5<<20 {
		t.Fatalf("the mirror read %d bytes of an endless manifest, want at most about 4 MiB", sent)
	}
	t.Logf("the mirror read %d bytes of an endless manifest body before refusing it", sent)
	if _, _, err := e.store.Manifest(context.Background(), ix.Descriptor.Digest); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the endless manifest was cached: %v", err)
	}
}

// A tag that moves upstream to an invalid manifest keeps its cached
// mapping: the mirror serves the old manifest stale, never the new bytes.
func TestTagMovedToInvalidManifestKeepsMapping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute, staleIfError: time.Hour})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)

	if _, err := e.upstream.PutManifest("library/node", "10", "text/html", []byte("<html>maintenance</html>")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	got := e.do(t, http.MethodGet, "/v2/library/node/manifests/10", nil)
	if got.status != http.StatusOK || !bytes.Equal(got.body, ix.Bytes) || got.header.Get("Warning") == "" {
		t.Fatalf("GET of a tag moved to HTML = %d (stale warning %q), want the cached index served stale",
			got.status, got.header.Get("Warning"))
	}
	d, _, err := e.store.Tag(context.Background(), "docker.io/library/node", "10")
	if err != nil || d != ix.Descriptor.Digest {
		t.Fatalf("tag now points at %s (%v), want still %s", d, err, ix.Descriptor.Digest)
	}
	if got := metricSum(t, e.metrics, "regmirror_upstream_invalid_manifests_total", nil); got != 1 {
		t.Fatalf("invalid manifests counted = %v, want 1", got)
	}
}

// Fifty clients asking for one cold blob at once cause one upstream GET,
// and all get every byte, even though the first of them hangs up after a
// tenth of the blob: the download belongs to the cache, not to that client.
func TestFiftyColdGETsOneDownloadLeaderHangsUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 1<<20)
	layer := ix.Images[0].Layers[0]
	tenth := layer.Size / 10
	fault := e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Stall, At: tenth})

	ctx, hangUp := context.WithCancel(context.Background())
	leader := e.get(t, ctx, blobPath(layer.Digest), nil)
	<-fault.Hit()
	if _, err := io.ReadFull(leader.Body, make([]byte, tenth)); err != nil {
		t.Fatalf("the leader read less than a tenth: %v", err)
	}
	hangUp()
	leader.Body.Close()

	const followers = 49
	bodies := make([][]byte, followers)
	var started, done sync.WaitGroup
	for i := range followers {
		started.Add(1)
		done.Go(func() {
			resp, err := e.start(context.Background(), blobPath(layer.Digest), nil)
			started.Done()
			if err != nil {
				t.Errorf("follower %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Errorf("follower %d: %v", i, err)
			}
			bodies[i] = body
		})
	}
	started.Wait() // every follower has its headers: all joined the download
	fault.Release()
	done.Wait()
	for i, body := range bodies {
		if int64(len(body)) != layer.Size || sha256Digest(body) != layer.Digest {
			t.Fatalf("follower %d got %d bytes hashing to %s", i, len(body), sha256Digest(body))
		}
	}
	if n := e.upstream.BlobGets(layer.Digest); n != 1 {
		t.Fatalf("%d upstream GETs, want 1", n)
	}
	st, err := e.store.Stats(context.Background())
	if err != nil || st.Blobs != 1 {
		t.Fatalf("index holds %d blobs (%v), want 1", st.Blobs, err)
	}
	if files := blobFiles(t, e.dir); len(files) != 1 {
		t.Fatalf("blob files %v, want one", files)
	}
}

// Range requests are answered exactly (206 with Content-Range) or refused
// (416), on cache hits and while the blob is still downloading.
func TestRangesOnHitsAndDownloadsInProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 2, 256<<10)
	hit, cold := ix.Images[0].Layers[0], ix.Images[0].Layers[1]
	hitBytes, _ := e.upstream.Blob(hit.Digest)
	coldBytes, _ := e.upstream.Blob(cold.Digest)
	e.expectBlob(t, "library/node", hit)

	for _, bad := range []string{"bytes=1499-500", "bytes=0-1,5-6", "bytes=999999999-", "bytes=abc", "bytes=-0"} {
		got := e.do(t, http.MethodGet, blobPath(hit.Digest), http.Header{"Range": {bad}})
		if got.status != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("Range %s = %d, want 416", bad, got.status)
		}
	}
	checkRange(t, e, blobPath(hit.Digest), "bytes=500-1499", hitBytes, 500, 1499, hit.Size)

	// The cold blob stalls at half way; a resume before and one after that
	// point both get exactly their bytes once it goes on.
	half := cold.Size / 2
	fault := e.upstream.InjectFault(cold.Digest, registrytest.Fault{Kind: registrytest.Stall, At: half})
	first := e.get(t, context.Background(), blobPath(cold.Digest), nil)
	defer first.Body.Close()
	<-fault.Hit()
	var wg sync.WaitGroup
	for _, offset := range []int64{half / 2, half + 1000} {
		wg.Go(func() {
			resp, err := e.start(context.Background(), blobPath(cold.Digest), http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}})
			if err != nil {
				t.Errorf("resume at %d: %v", offset, err)
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			want := fmt.Sprintf("bytes %d-%d/%d", offset, cold.Size-1, cold.Size)
			if err != nil || resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want {
				t.Errorf("resume at %d during the download = %d %q, %v", offset, resp.StatusCode, resp.Header.Get("Content-Range"), err)
			}
			if !bytes.Equal(body, coldBytes[offset:]) {
				t.Errorf("resume at %d during the download: wrong bytes", offset)
			}
		})
	}
	fault.Release()
	wg.Wait()
	if body, err := io.ReadAll(first.Body); err != nil || !bytes.Equal(body, coldBytes) {
		t.Fatalf("the download's first client: %d bytes, %v", len(body), err)
	}
	if n := e.upstream.BlobGets(cold.Digest); n != 1 {
		t.Fatalf("%d upstream GETs of the downloading blob, want 1", n)
	}
}

// Hostile names, digests and tags are refused by the parser: the right
// OCI error, and neither the cache nor the upstream hears of them.
func TestHostileNamesDigestsAndTags(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	long := strings.Repeat("a", 256)
	tests := []struct {
		path   string
		status int
		code   string
	}{
		{"/v2/a//b/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/" + long + "/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/a/%2E%2E/b/blobs/" + validDigest, http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/library/Node/manifests/1", http.StatusBadRequest, "NAME_INVALID"},
		{"/v2/a/blobs/" + strings.ToUpper(validDigest), http.StatusBadRequest, "DIGEST_INVALID"},
		{"/v2/a/blobs/sha256:" + strings.ToUpper(validDigest[7:]), http.StatusBadRequest, "DIGEST_INVALID"},
		{"/v2/a/blobs/" + validDigest[:len(validDigest)-1], http.StatusBadRequest, "DIGEST_INVALID"},
		{"/v2/a/blobs/sha256:..%2Fx", http.StatusBadRequest, "NAME_INVALID"},
		// Not a manifest path at all once split on '/': no such endpoint.
		{"/v2/a/manifests/sha256:../x", http.StatusNotFound, "NAME_UNKNOWN"},
		{"/v2/a/blobs/sha384:" + strings.Repeat("a", 96), http.StatusBadRequest, "DIGEST_INVALID"},
		{"/v2/a/blobs/sha512:" + strings.Repeat("a", 64), http.StatusBadRequest, "DIGEST_INVALID"},
		{"/v2/a/manifests/" + strings.Repeat("t", 129), http.StatusBadRequest, "TAG_INVALID"},
		{"/v2/a/manifests/-tag", http.StatusBadRequest, "TAG_INVALID"},
		{"/v2/a/manifests/t;ls", http.StatusBadRequest, "TAG_INVALID"},
		{"/v2/a/manifests/.hidden", http.StatusBadRequest, "TAG_INVALID"},
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			got := e.do(t, method, tt.path, nil)
			if got.status != tt.status {
				t.Errorf("%s %s = %d, want %d", method, tt.path, got.status, tt.status)
			}
			if method == http.MethodGet {
				assertOCIError(t, got, tt.code)
			}
		}
	}
	if n := len(e.upstream.Requests()); n != 0 {
		t.Fatalf("hostile requests made %d upstream requests", n)
	}
	if got := metricSum(t, e.metrics, "regmirror_cache_lookups_total", nil); got != 0 {
		t.Fatalf("hostile requests made %v cache lookups", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dir, "tmp")); len(entries) != 0 {
		t.Fatalf("hostile requests left files in tmp: %v", entries)
	}
}

const validDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

const mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"

func blobPath(d digest.Digest) string { return "/v2/library/node/blobs/" + d.String() }

// get starts a request and returns the response with its body unread.
func (e *env) get(t *testing.T, ctx context.Context, path string, header http.Header) *http.Response {
	t.Helper()
	resp, err := e.start(ctx, path, header)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// start is get for goroutines other than the test's, which must not
// call t.Fatal.
func (e *env) start(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.mirror.URL+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.mirror.Client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp, nil
}

// assertNotCached checks a blob is neither indexed nor on disk, and that no
// download left a temp file.
func (e *env) assertNotCached(t *testing.T, d digest.Digest) {
	t.Helper()
	if rc, _, err := e.store.ReadBlob(context.Background(), d, 0); !errors.Is(err, fs.ErrNotExist) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("blob %s is cached: %v", d, err)
	}
	for _, f := range blobFiles(t, e.dir) {
		if filepath.Base(f) == d.Encoded() {
			t.Fatalf("the blob's file remains: %s", f)
		}
	}
	waitFor(t, "the download's temp file to go", func() bool {
		entries, err := os.ReadDir(filepath.Join(e.dir, "tmp"))
		return err == nil && len(entries) == 0
	})
}

// blobFiles lists the files of a data directory's blob tree.
func blobFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// metricSum adds up the samples of a metric whose labels include labels.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue samples
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// waitFor polls cond until it holds, failing the test after ten seconds.
// It waits for something that happens asynchronously (a goroutine ending,
// a connection closing); it asserts no timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting file descriptors: %v", err)
	}
	return len(entries)
}

// tamper is an upstream transport that damages chosen responses on their
// way from the registry to the mirror, as its rule says.
type tamper struct {
	mu   sync.Mutex
	rule tamperRule
	sent *countingReader // the endless body, once there is one
}

type tamperRule struct {
	// blob gets extra bytes past its Content-Length, times times.
	blob  digest.Digest
	extra []byte
	times int
	// manifest's GET body becomes endless.
	manifest digest.Digest
	endless  bool
}

func (tp *tamper) set(rule tamperRule) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.rule = rule
}

func (tp *tamper) endlessSent() int64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.sent == nil {
		return 0
	}
	return tp.sent.n.Load()
}

func (tp *tamper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || req.Method != http.MethodGet {
		return resp, err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	r := &tp.rule
	switch {
	case r.blob != "" && r.times > 0 && strings.HasSuffix(req.URL.Path, "/blobs/"+r.blob.String()):
		r.times--
		resp.Body = readCloser{io.MultiReader(resp.Body, bytes.NewReader(r.extra)), resp.Body}
	case r.endless && strings.HasSuffix(req.URL.Path, "/manifests/"+r.manifest.String()):
		resp.Body.Close()
		tp.sent = &countingReader{r: endless{}}
		resp.Body = io.NopCloser(tp.sent)
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
	}
	return resp, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// endless is a body of spaces that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// goroutinesMatch reports whether any goroutine's stack names one of funcs.
func goroutinesMatch(funcs ...string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, f := range funcs {
		if bytes.Contains(buf, []byte(f)) {
			return true
		}
	}
	return false
}
