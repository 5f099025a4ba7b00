//go:build e2e

package e2e_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is an in-memory registry on 127.0.0.1 that records the
// requests it serves.
type testRegistry struct {
	// URL is the registry's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Host is URL's host:port, for image references.
	Host string

	mu       sync.Mutex
	requests []string // "METHOD /path", in arrival order
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		handler.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.URL, r.Host = srv.URL, u.Host
	return r
}

// resetRequests forgets the requests served so far, such as a test's pushes.
func (r *testRegistry) resetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// requestsFor returns the requests served for repository repo since the
// last resetRequests.
func (r *testRegistry) requestsFor(repo string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(r.requests), func(req string) bool {
		return !strings.Contains(req, " /v2/"+repo+"/")
	})
}

// imageFormat is one family of media types an image is pushed with.
type imageFormat struct {
	index, manifest, config, layer types.MediaType
}

var (
	dockerFormat = imageFormat{types.DockerManifestList, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer}
	ociFormat    = imageFormat{types.OCIImageIndex, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer}
)

var (
	linuxAMD64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// multiArchImage is an index pushed by pushMultiArch.
type multiArchImage struct {
	index v1.Hash
	// amd64 is the linux/amd64 image, the one an amd64 dockerd pulls.
	amd64 v1.Image
	// arm64 is the linux/arm64 image, which it must not fetch.
	arm64 v1.Image
}

// pushMultiArch pushes a linux/amd64 + linux/arm64 index of small random
// images to reg as repoTag (e.g. "library/busybox:1").
func pushMultiArch(t *testing.T, reg *testRegistry, repoTag string, f imageFormat) multiArchImage {
	t.Helper()
	img := multiArchImage{
		amd64: platformImage(t, f, linuxAMD64),
		arm64: platformImage(t, f, linuxARM64),
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, f.index),
		mutate.IndexAddendum{Add: img.amd64, Descriptor: v1.Descriptor{Platform: &linuxAMD64}},
		mutate.IndexAddendum{Add: img.arm64, Descriptor: v1.Descriptor{Platform: &linuxARM64}},
	)
	ref, err := name.ParseReference(reg.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	if img.index, err = idx.Digest(); err != nil {
		t.Fatal(err)
	}
	return img
}

// platformImage is a two-layer image of random gzipped tar layers whose
// config names platform p, as dockerd requires to select and load it.
func platformImage(t *testing.T, f imageFormat, p v1.Platform) v1.Image {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, f.manifest), f.config)
	var adds []mutate.Addendum
	for range 2 {
		layer, err := random.Layer(1024, f.layer)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.Addendum{Layer: layer})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// blobRequests lists the GETs that fetching img's config and layers makes.
func blobRequests(t *testing.T, repo string, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	reqs := []string{"GET /v2/" + repo + "/blobs/" + m.Config.Digest.String()}
	for _, l := range m.Layers {
		reqs = append(reqs, "GET /v2/"+repo+"/blobs/"+l.Digest.String())
	}
	return reqs
}
