package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// pushChunked uploads data to repo in chunks (POST, a PATCH per chunk,
// PUT with d) and checks it was stored as d.
func (e *hostedEnv) pushChunked(t *testing.T, repo string, d digest.Digest, data []byte, chunks int) {
	t.Helper()
	r := e.push(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST upload = %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	step := (len(data) + chunks - 1) / chunks
	for off := 0; off < len(data); off += step {
		end := min(off+step, len(data))
		r = e.push(t, http.MethodPatch, loc, data[off:end], http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", off, end-1)},
		})
		if r.status != http.StatusAccepted {
			t.Fatalf("PATCH %d-%d = %d %s", off, end-1, r.status, r.body)
		}
		loc = r.header.Get("Location")
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	r = e.push(t, http.MethodPut, loc+sep+"digest="+d.String(), nil, nil)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("PUT %s = %d digest %q: %s", d, r.status, r.header.Get("Docker-Content-Digest"), r.body)
	}
}

// expectHostedBlob checks that repo serves data as blob d, with d in
// Docker-Content-Digest.
func (e *hostedEnv) expectHostedBlob(t *testing.T, repo string, d digest.Digest, data []byte) {
	t.Helper()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		r := e.send(t, method, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, "", "")
		if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("%s blob %s in %s = %d digest %q", method, d, repo, r.status, r.header.Get("Docker-Content-Digest"))
		}
		if method == http.MethodGet && !bytes.Equal(r.body, data) {
			t.Fatalf("GET blob %s in %s: %d bytes differ from the %d pushed", d, repo, len(r.body), len(data))
		}
	}
}

// TestSHA512HostedBlobs: a blob pushed by its sha512 digest, whole or in
// chunks, is stored under blobs/sha512, served under that digest, mounted
// into another repository and deleted, like a sha256 one.
func TestSHA512HostedBlobs(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, AllowDelete: true})

	whole := []byte("a layer pushed in one request, named by sha512")
	dWhole := digest.SHA512.FromBytes(whole)
	r := e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+dWhole.String(), whole,
		http.Header{"Content-Type": {"application/octet-stream"}})
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != dWhole.String() {
		t.Fatalf("monolithic sha512 upload = %d digest %q: %s", r.status, r.header.Get("Docker-Content-Digest"), r.body)
	}
	e.expectHostedBlob(t, "team/app", dWhole, whole)

	chunked := bytes.Repeat([]byte("chunked sha512 layer "), 4096)
	dChunked := digest.SHA512.FromBytes(chunked)
	e.pushChunked(t, "team/app", dChunked, chunked, 3)
	e.expectHostedBlob(t, "team/app", dChunked, chunked)
	file := filepath.Join(e.dir, "blobs", "sha512", dChunked.Encoded()[:2], dChunked.Encoded())
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, chunked) {
		t.Fatalf("blob file %s: %v (%d bytes)", file, err, len(got))
	}

	r = e.push(t, http.MethodPost, "/v2/team/other/blobs/uploads/?mount="+dChunked.String()+"&from=team/app", nil, nil)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != dChunked.String() {
		t.Fatalf("mount sha512 blob = %d digest %q: %s", r.status, r.header.Get("Docker-Content-Digest"), r.body)
	}
	e.expectHostedBlob(t, "team/other", dChunked, chunked)

	for _, repo := range []string{"team/app", "team/other"} {
		if r := e.push(t, http.MethodDelete, "/v2/"+repo+"/blobs/"+dChunked.String(), nil, nil); r.status != http.StatusAccepted {
			t.Fatalf("DELETE sha512 blob in %s = %d %s", repo, r.status, r.body)
		}
		if r := e.send(t, http.MethodGet, "/v2/"+repo+"/blobs/"+dChunked.String(), nil, nil, "", ""); r.status != http.StatusNotFound || r.errorCode() != "BLOB_UNKNOWN" {
			t.Fatalf("GET deleted sha512 blob in %s = %d %s", repo, r.status, r.body)
		}
	}
}

// TestSHA512UploadValidation: an upload committed by a sha512 digest its
// bytes do not have stores nothing, and algorithms other than sha256 and
// sha512 are refused before anything is read.
func TestSHA512UploadValidation(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	data := []byte("the bytes of a layer")
	// The sha512 of other bytes, and a sha512 whose first half is the
	// sha256 of these bytes: neither may pass.
	wrong := digest.SHA512.FromString("other bytes")
	halfway := digest.NewDigestFromEncoded(digest.SHA512, digest.SHA256.FromBytes(data).Encoded()+strings.Repeat("0", 64))
	for _, d := range []digest.Digest{wrong, halfway} {
		r := e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+d.String(), data, nil)
		if r.status != http.StatusBadRequest || r.errorCode() != "DIGEST_INVALID" {
			t.Fatalf("upload by a sha512 its bytes do not have = %d %s", r.status, r.body)
		}
		if r := e.send(t, http.MethodHead, "/v2/team/app/blobs/"+d.String(), nil, nil, "", ""); r.status != http.StatusNotFound {
			t.Fatalf("HEAD %s after a refused upload = %d", d, r.status)
		}
	}
	sha384 := digest.SHA384.FromBytes(data)
	for _, path := range []string{
		"/v2/team/app/blobs/uploads/?digest=" + sha384.String(),
		"/v2/team/app/blobs/uploads/?mount=" + sha384.String() + "&from=team/app",
	} {
		r := e.push(t, http.MethodPost, path, data, nil)
		if r.status != http.StatusBadRequest || r.errorCode() != "DIGEST_INVALID" || !strings.Contains(string(r.body), "unsupported digest algorithm") {
			t.Fatalf("POST %s = %d %s, want 400 DIGEST_INVALID naming the unsupported algorithm", path, r.status, r.body)
		}
	}
}

// TestSHA512HostedManifests: a manifest pushed by its sha512 digest is
// stored and served under that digest, tags pushed with it (?tag=) point
// to it, and it may refer to sha512 blobs. A push by tag alone is named by
// the manifest's sha256, as the distribution spec says: a tag push carries
// no algorithm.
func TestSHA512HostedManifests(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, AllowDelete: true})
	layer := []byte("layer named by sha512")
	dLayer := digest.SHA512.FromBytes(layer)
	if r := e.push(t, http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+dLayer.String(), layer, nil); r.status != http.StatusCreated {
		t.Fatalf("push layer = %d %s", r.status, r.body)
	}
	manifest := imageManifest(dLayer)
	d512 := digest.SHA512.FromBytes(manifest)
	d256 := digest.SHA256.FromBytes(manifest)
	ct := http.Header{"Content-Type": {ocispec.MediaTypeImageManifest}}

	r := e.push(t, http.MethodPut, "/v2/team/app/manifests/"+d512.String()+"?tag=v512", manifest, ct)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != d512.String() ||
		r.header.Get("Location") != "/v2/team/app/manifests/"+d512.String() {
		t.Fatalf("PUT by sha512 = %d digest %q location %q: %s", r.status, r.header.Get("Docker-Content-Digest"), r.header.Get("Location"), r.body)
	}
	for _, ref := range []string{d512.String(), "v512"} {
		e.expectHostedManifest(t, "team/app", ref, d512, manifest)
	}
	if r := e.send(t, http.MethodGet, "/v2/team/app/manifests/"+d256.String(), nil, nil, "", ""); r.status != http.StatusNotFound {
		t.Fatalf("GET by the sha256 of a manifest pushed only by sha512 = %d, want 404", r.status)
	}

	r = e.push(t, http.MethodPut, "/v2/team/app/manifests/v256", manifest, ct)
	if r.status != http.StatusCreated || r.header.Get("Docker-Content-Digest") != d256.String() {
		t.Fatalf("PUT by tag = %d digest %q, want the sha256 %s", r.status, r.header.Get("Docker-Content-Digest"), d256)
	}
	e.expectHostedManifest(t, "team/app", "v256", d256, manifest)

	wrong := digest.SHA512.FromString("another manifest")
	if r := e.push(t, http.MethodPut, "/v2/team/app/manifests/"+wrong.String(), manifest, ct); r.status != http.StatusBadRequest || r.errorCode() != "DIGEST_INVALID" {
		t.Fatalf("PUT under another sha512 = %d %s, want 400 DIGEST_INVALID", r.status, r.body)
	}

	if r := e.push(t, http.MethodDelete, "/v2/team/app/manifests/"+d512.String(), nil, nil); r.status != http.StatusAccepted {
		t.Fatalf("DELETE sha512 manifest = %d %s", r.status, r.body)
	}
	if r := e.send(t, http.MethodGet, "/v2/team/app/manifests/"+d512.String(), nil, nil, "", ""); r.status != http.StatusNotFound {
		t.Fatalf("GET deleted sha512 manifest = %d", r.status)
	}
	e.expectHostedManifest(t, "team/app", "v256", d256, manifest) // the sha256 copy is its own
}

func (e *hostedEnv) expectHostedManifest(t *testing.T, repo, ref string, d digest.Digest, data []byte) {
	t.Helper()
	r := e.send(t, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, http.Header{"Accept": {ocispec.MediaTypeImageManifest}}, "", "")
	if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != d.String() || !bytes.Equal(r.body, data) {
		t.Fatalf("GET manifest %s:%s = %d digest %q, want %s and the pushed bytes", repo, ref, r.status, r.header.Get("Docker-Content-Digest"), d)
	}
}

// TestSHA512ProxiedPull: content an upstream names by sha512 is pulled
// through the mirror by that digest, verified with sha512, cached under it
// and served again without asking the upstream; a blob whose bytes the
// upstream corrupts is never served nor cached, and the next pull is right.
func TestSHA512ProxiedPull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	layer := bytes.Repeat([]byte("proxied sha512 layer "), 8192)
	dLayer := e.upstream.PutBlobAs(digest.SHA512, layer)
	manifest := imageManifest(dLayer)
	dManifest := digest.SHA512.FromBytes(manifest)
	if _, err := e.upstream.PutManifest("library/node", dManifest.String(), ocispec.MediaTypeImageManifest, manifest); err != nil {
		t.Fatal(err)
	}
	e.upstream.Reset()

	path := "/v2/library/node/manifests/" + dManifest.String()
	e.expectContent(t, path, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dManifest}, manifest)

	fault := e.upstream.InjectFault(dLayer, registrytest.Fault{Kind: registrytest.Corrupt, Times: 1})
	blobPath := "/v2/library/node/blobs/" + dLayer.String()
	if got := e.doOnce(t, http.MethodGet, blobPath); got.err == nil && got.status == http.StatusOK && bytes.Equal(got.body, layer) {
		t.Fatal("a corrupted sha512 blob was served whole")
	} else if got.err == nil && got.status == http.StatusOK {
		t.Fatalf("a corrupted sha512 blob was served: %d bytes, the connection ended cleanly", len(got.body))
	}
	if fault.Hits() != 1 {
		t.Fatalf("the upstream corrupted %d responses, want 1", fault.Hits())
	}
	if rc, _, err := e.store.ReadBlob(context.Background(), dLayer, 0); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("after a corrupt download the store answers %v, want not found", err)
	}

	got := e.do(t, http.MethodGet, blobPath, nil)
	if got.err != nil || got.status != http.StatusOK || !bytes.Equal(got.body, layer) || got.header.Get("Docker-Content-Digest") != dLayer.String() {
		t.Fatalf("GET sha512 blob after the fault = %d, %v, digest %q", got.status, got.err, got.header.Get("Docker-Content-Digest"))
	}
	file := filepath.Join(e.dir, "blobs", "sha512", dLayer.Encoded()[:2], dLayer.Encoded())
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the sha512 blob is not in the blob tree: %v", err)
	}

	before := len(e.upstream.Requests())
	e.expectContent(t, path, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dManifest}, manifest)
	if got := e.do(t, http.MethodGet, blobPath, nil); got.status != http.StatusOK || !bytes.Equal(got.body, layer) {
		t.Fatalf("cached GET sha512 blob = %d", got.status)
	}
	if after := len(e.upstream.Requests()); after != before {
		t.Fatalf("cached sha512 content made %d upstream requests", after-before)
	}
}

// TestAccessLogKeepsLongestSHA512PathWhole: the longest valid request path,
// a 255-character repository name and a sha512 digest, is logged whole.
func TestAccessLogKeepsLongestSHA512PathWhole(t *testing.T) {
	t.Parallel()
	e := newAuditEnv(t)
	name := "team/" + strings.Repeat("a", 250)
	path := "/v2/" + name + "/blobs/" + digest.SHA512.FromString("x").String()
	if status, body := e.do(t, http.MethodGet, path, "", "longest"); status != http.StatusNotFound {
		t.Fatalf("GET %s = %d %s, want 404", path, status, body)
	}
	if got := e.accessLine(t, "longest")["path"]; got != path {
		t.Fatalf("logged path %v, want the request's %d characters", got, len(path))
	}
}
