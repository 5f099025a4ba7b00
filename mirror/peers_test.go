package mirror_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// peerHeader stands in for a valid peer signature in these tests: the
// daemon verifies signatures (internal/cluster) before it marks a request
// with mirror.WithTrustedPeer, and cmd/regmirror tests that part.
const peerHeader = "X-Test-Peer"

// trustPeers marks the requests carrying peerHeader as a peer's.
func trustPeers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(peerHeader) != "" {
			r = r.WithContext(mirror.WithTrustedPeer(r.Context()))
		}
		next.ServeHTTP(w, r)
	})
}

// peerLink is a replica's view of a cluster in which owner owns every
// digest; it reads from owner over HTTP as a peer would.
type peerLink struct {
	owner string // base URL
	self  bool
	calls atomic.Int64 // blob downloads
	// manifestCalls counts tag resolutions and manifest downloads.
	manifestCalls atomic.Int64
}

func (p *peerLink) Owner(string) (string, bool) { return p.owner, p.self }

func (p *peerLink) FetchBlob(ctx context.Context, peer, host, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, int64, error) {
	p.calls.Add(1)
	u := peer + "/v2/" + repo + "/blobs/" + d.String() + "?" + url.Values{"ns": {host}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	req.Header.Set(peerHeader, "1")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, resp.ContentLength, nil
	case http.StatusPartialContent:
		var first, last, size int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &size); err != nil {
			resp.Body.Close()
			return nil, 0, 0, err
		}
		return resp.Body, first, size, nil
	}
	resp.Body.Close()
	return nil, 0, 0, fmt.Errorf("peer answered %d", resp.StatusCode)
}

func (p *peerLink) ResolveManifest(ctx context.Context, peer, host, repo, ref string) (digest.Digest, error) {
	resp, err := p.manifest(ctx, http.MethodHead, peer, host, repo, ref)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return digest.Parse(resp.Header.Get("Docker-Content-Digest"))
}

func (p *peerLink) FetchManifest(ctx context.Context, peer, host, repo, ref string) (string, []byte, error) {
	resp, err := p.manifest(ctx, http.MethodGet, peer, host, repo, ref)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.Header.Get("Content-Type"), data, err
}

func (p *peerLink) manifest(ctx context.Context, method, peer, host, repo, ref string) (*http.Response, error) {
	p.manifestCalls.Add(1)
	u := peer + "/v2/" + repo + "/manifests/" + ref + "?" + url.Values{"ns": {host}}.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(peerHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("peer answered %d", resp.StatusCode)
	}
	return resp, nil
}

// A replica that does not own a blob downloads it from the owner, which
// alone asks the upstream; both serve it from their caches afterwards.
func TestClusterNonOwnerFetchesFromTheOwner(t *testing.T) {
	t.Parallel()
	owner := newEnv(t, envOptions{wrap: trustPeers})
	ix := owner.pushNode(t, 3, 256<<10)
	link := &peerLink{owner: owner.mirror.URL}
	replica := newEnv(t, envOptions{shared: owner.upstream, peers: link})

	replica.pullIndex(t, "library/node", "10", ix)
	owner.pullIndex(t, "library/node", "10", ix)
	replica.pullIndex(t, "library/node", "10", ix)

	blobs := 0
	for _, img := range ix.Images {
		for _, b := range img.Blobs() {
			blobs++
			if n := owner.upstream.BlobGets(b.Digest); n != 1 {
				t.Errorf("blob %s: %d upstream GETs across both replicas; want 1", b.Digest, n)
			}
		}
	}
	if got := link.calls.Load(); got == 0 || got > int64(blobs) {
		t.Errorf("the replica asked its peer %d times for %d blobs", got, blobs)
	}
	if n := metricSum(t, replica.metrics, "regmirror_cluster_forward_failures_total", nil); n != 0 {
		t.Errorf("%v forward failures; want 0", n)
	}
}

// A replica whose owner is down fetches from the upstream, counts the
// failure, and serves the verified bytes.
func TestClusterOwnerDownFallsBackToTheUpstream(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	link := &peerLink{owner: dead.URL}
	replica := newEnv(t, envOptions{peers: link})
	ix := replica.pushNode(t, 1, 64<<10)
	layer := ix.Images[0].Layers[0]

	replica.expectBlob(t, "library/node", layer)

	if n := replica.upstream.BlobGets(layer.Digest); n != 1 {
		t.Errorf("%d upstream GETs; want 1", n)
	}
	if link.calls.Load() != 1 {
		t.Errorf("asked the dead owner %d times; want 1", link.calls.Load())
	}
	if n := metricSum(t, replica.metrics, "regmirror_cluster_forward_failures_total", nil); n != 1 {
		t.Errorf("%v forward failures counted; want 1", n)
	}
}

// What a peer asks for is fetched from the upstream even when this
// replica believes another owns it: a request is never forwarded twice.
// A digest this replica owns is fetched from the upstream too.
func TestClusterPeerRequestsAndOwnedDigestsGoUpstream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		self   bool
		header http.Header
	}{
		{name: "request from a peer", header: http.Header{peerHeader: {"1"}}},
		{name: "owned here", self: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			link := &peerLink{owner: "http://127.0.0.1:1", self: tt.self}
			e := newEnv(t, envOptions{peers: link, wrap: trustPeers})
			ix := e.pushNode(t, 1, 64<<10)
			layer := ix.Images[0].Layers[0]
			got := e.do(t, http.MethodGet, "/v2/library/node/blobs/"+layer.Digest.String(), tt.header)
			if got.status != http.StatusOK || sha256Digest(got.body) != layer.Digest {
				t.Fatalf("GET = %d, %d bytes", got.status, len(got.body))
			}
			if link.calls.Load() != 0 || e.upstream.BlobGets(layer.Digest) != 1 {
				t.Errorf("asked the peer %d times and the upstream %d; want 0 and 1", link.calls.Load(), e.upstream.BlobGets(layer.Digest))
			}
		})
	}
}

// A verified peer reads what a client that logged in may: a repository
// only the mirror's upstream credentials read, which anonymous clients
// are refused.
func TestClusterTrustedPeerReadsPrivateRepositories(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true, unexposed: true, wrap: trustPeers})
	ix := e.pushNode(t, 1, 4096)
	path := "/v2/library/node/blobs/" + ix.Images[0].Layers[0].Digest.String()
	if got := e.do(t, http.MethodGet, path, nil); got.status != http.StatusForbidden {
		t.Fatalf("anonymous GET = %d; want 403", got.status)
	}
	got := e.do(t, http.MethodGet, path, http.Header{peerHeader: {"1"}})
	if got.status != http.StatusOK || sha256Digest(got.body) != ix.Images[0].Layers[0].Digest {
		t.Fatalf("peer GET = %d %s; want the blob", got.status, got.body)
	}
}

// Another replica forwards an anonymous client's request for content a
// logged-in client pulled from a private repository, named under a public
// repository: the forward is signed, and still it reads no content the
// public repository does not hold. The replica authorized its client for
// the repository it named, nothing more.
func TestAttackPeerForwardReadsNoOtherRepositorysContent(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t)
	private, err := e.hub.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 4096, Seed: 45})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 46}); err != nil {
		t.Fatal(err)
	}
	e.pullAsUser(t, "library/node", private)

	owner := httptest.NewServer(trustPeers(e.server.Config.Handler))
	t.Cleanup(owner.Close)
	for _, p := range contentPaths("team/app", private) {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			got := roundTrip(t, owner, method, "/v2/"+p, nil, http.Header{peerHeader: {"1"}})
			if got.status < 400 {
				t.Errorf("forwarded %s /v2/%s = %d (%d bytes): a private repository's content leaked under a public name",
					method, p, got.status, len(got.body))
			}
		}
	}
}

// A manifest a peer asks for, by tag or by digest, is fetched from the
// upstream even when this replica believes a third one owns it, though
// the fill that fetches it outlives the peer's request: a request is
// never forwarded twice, and a forward that would be refused is not
// tried (nor counted as the owner's failure).
func TestClusterPeerManifestRequestsGoUpstream(t *testing.T) {
	t.Parallel()
	link := &peerLink{owner: "http://127.0.0.1:1"}
	e := newEnv(t, envOptions{peers: link, wrap: trustPeers})
	ix := e.pushNode(t, 1, 4096)
	peer := http.Header{peerHeader: {"1"}, "Accept": {ocispec.MediaTypeImageIndex}}
	for _, ref := range []string{"10", ix.Images[0].Manifest.Digest.String()} {
		got := e.do(t, http.MethodGet, "/v2/library/node/manifests/"+ref, peer)
		if got.status != http.StatusOK {
			t.Fatalf("peer GET manifest %s = %d %s", ref, got.status, got.body)
		}
	}
	if n := link.manifestCalls.Load(); n != 0 {
		t.Errorf("asked another replica %d times for what a peer asked; want 0", n)
	}
	if n := metricSum(t, e.metrics, "regmirror_cluster_forward_failures_total", nil); n != 0 {
		t.Errorf("%v forward failures counted; want 0", n)
	}
}
