package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/eviction"
)

// hostileUpstream is a registry that answers every blob request with a
// body from blob, and everything else with an empty 200. It reports each
// blob response's end on ended.
type hostileUpstream struct {
	url   string
	ended chan blobResponse
}

// blobResponse is how one blob response of a hostile upstream ended.
type blobResponse struct {
	written int64
	// cut: the mirror went away before the body's end.
	cut bool
}

// safetyLimit ends a hostile body that the mirror does not stop, so that a
// test against a mirror without limits fails instead of filling the disk.
const safetyLimit = 128 << 20

func startHostileUpstream(t *testing.T, blob func(w http.ResponseWriter, r *http.Request) blobResponse) *hostileUpstream {
	t.Helper()
	h := &hostileUpstream{ended: make(chan blobResponse, 4)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("{}"))
			return
		}
		h.ended <- blob(w, r)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// endless writes chunks of a body without Content-Length until the
// mirror hangs up or the safety limit is reached; before each chunk after
// the first, it waits for proceed.
func endless(w http.ResponseWriter, proceed <-chan struct{}) blobResponse {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	chunk := make([]byte, 32<<10)
	var res blobResponse
	for res.written < safetyLimit {
		if res.written > 0 {
			<-proceed
		}
		n, err := w.Write(chunk)
		res.written += int64(n)
		if err != nil {
			res.cut = true
			return res
		}
		w.(http.Flusher).Flush()
	}
	return res
}

// hostileDaemon runs the daemon with a budget of 1 MiB in front of up.
func hostileDaemon(t *testing.T, up *hostileUpstream) (base, dataDir string, stop func() error) {
	t.Helper()
	noFloor := Size(0)
	dataDir = t.TempDir()
	cfg := Config{DataDir: dataDir, ListedUpstreamsOnly: true,
		Cache:     CacheConfig{MaxSize: Size(1 << 20), MinFreeDisk: &noFloor},
		Upstreams: []UpstreamConfig{{Host: "docker.io", URL: up.url}}}.withDefaults()
	base, stop = startDaemon(t, cfg, io.Discard)
	waitFor(t, base+"/healthz")
	return base, dataDir, stop
}

// assertNothingStored checks, once the daemon has stopped (which waits for
// its downloads), that no blob and no temp file is left in dataDir.
func assertNothingStored(t *testing.T, dataDir string, stop func() error) {
	t.Helper()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"blobs", "tmp"} {
		filepath.WalkDir(filepath.Join(dataDir, dir), func(path string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				t.Errorf("%s is left in the data directory", strings.TrimPrefix(path, dataDir))
			}
			return nil
		})
	}
}

var hostileDigest = digest.FromString("what the hostile upstream claims to serve")

// An upstream blob body has a hard cap: the cap (here the budget, 1 MiB) cuts
// a body of unknown length, and refuses one announced larger before a byte
// is written, with an OCI error. Nothing is stored either way.
func TestHostileUpstreamBlobBodiesAreCapped(t *testing.T) {
	t.Parallel()
	proceed := make(chan struct{})
	close(proceed)
	tests := []struct {
		name       string
		blob       func(w http.ResponseWriter, r *http.Request) blobResponse
		wantStatus int
		orStatus   int // also right, when set
	}{
		{
			name: "endless body of unknown length",
			blob: func(w http.ResponseWriter, _ *http.Request) blobResponse { return endless(w, proceed) },
			// The length is unknown until the cap strikes: mid-body (200, then
			// a cut), or before the headers went out when the upstream is
			// faster than the client's request (403).
			wantStatus: http.StatusOK,
			orStatus:   http.StatusForbidden,
		},
		{
			name: "announced larger than the cap",
			blob: func(w http.ResponseWriter, r *http.Request) blobResponse {
				w.Header().Set("Content-Length", strconv.Itoa(1<<30))
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-r.Context().Done() // not one byte follows: the mirror must not wait for any
				return blobResponse{cut: true}
			},
			wantStatus: http.StatusForbidden,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := startHostileUpstream(t, tt.blob)
			base, dataDir, stop := hostileDaemon(t, up)

			resp, err := http.Get(base + "/v2/library/victim/blobs/" + hostileDigest.String())
			if err != nil {
				t.Fatal(err)
			}
			body, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus && (tt.orStatus == 0 || resp.StatusCode != tt.orStatus) {
				t.Fatalf("GET blob = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if resp.StatusCode == http.StatusOK && readErr == nil {
				t.Errorf("the client got a clean end of a %d-byte body that was cut", len(body))
			}
			if resp.StatusCode != http.StatusOK && !strings.Contains(string(body), `"code":"DENIED"`) {
				t.Errorf("refusal body %q is not an OCI DENIED error", body)
			}
			if got := <-up.ended; !got.cut || got.written >= safetyLimit {
				t.Errorf("the upstream sent %d bytes (cut: %v): the mirror read the body to its end", got.written, got.cut)
			}
			assertNothingStored(t, dataDir, stop)
		})
	}
}

// A download of unknown length stops when its only reader leaves, and its
// temp file goes: nobody would get its bytes, and it could grow without end.
func TestHostileUpstreamAbandonedFillStops(t *testing.T) {
	t.Parallel()
	proceed := make(chan struct{})
	up := startHostileUpstream(t, func(w http.ResponseWriter, _ *http.Request) blobResponse { return endless(w, proceed) })
	base, dataDir, stop := hostileDaemon(t, up)

	resp, err := http.Get(base + "/v2/library/victim/blobs/" + hostileDigest.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the only reader hangs up
	close(proceed)    // and the upstream would go on sending, endlessly

	select {
	case got := <-up.ended:
		if !got.cut {
			t.Fatalf("the upstream sent its whole %d-byte body to a download nobody read", got.written)
		}
	case <-time.After(time.Minute): // bounds a hang; nothing is measured
		t.Fatal("the download went on after its only reader left")
	}
	assertNothingStored(t, dataDir, stop)
}

// A stream of distinct manifests of up to 4 MiB each counts against the
// budget, and eviction keeps it within the budget.
func TestManyManifestsStayWithinBudget(t *testing.T) {
	t.Parallel()
	const budget = 2 << 20
	e := newBudgetEnv(t, eviction.Config{MaxSize: budget})
	for i := range 12 {
		data := paddedManifest(t, i, 512<<10)
		tag := strconv.Itoa(i)
		if _, err := e.hub.PutManifest("library/flood", tag, ocispec.MediaTypeImageManifest, data); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
		httpGet(t, e.mirror.URL+"/v2/library/flood/manifests/"+tag, ocispec.MediaTypeImageManifest)
		if _, err := e.evictor.Evict(context.Background()); err != nil {
			t.Fatal(err)
		}
		inv, err := e.store.Inventory(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		for _, m := range inv.Manifests {
			stored += m.Size
		}
		if stored > budget || e.store.Usage() > budget {
			t.Fatalf("after %d manifests: %d manifest bytes stored, usage %d, budget %d", i+1, stored, e.store.Usage(), budget)
		}
	}
}

// paddedManifest is a valid image manifest of about size bytes, different
// for each i.
func paddedManifest(t *testing.T, i, size int) []byte {
	t.Helper()
	m := ocispec.Manifest{
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("config"), Size: 6},
		Layers:      []ocispec.Descriptor{},
		Annotations: map[string]string{"pad": fmt.Sprintf("%d-%s", i, strings.Repeat("x", size))},
	}
	m.SchemaVersion = 2
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
