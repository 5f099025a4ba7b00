package mirror_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// Artifact types of the referrers the tests push.
const (
	cosignSigType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	sbomType      = "application/spdx+json"
)

// pushReferrers signs library/node:10's index upstream and attaches an
// SBOM to it.
func (e *env) pushReferrers(t *testing.T, ix registrytest.Index) (sig, sbom registrytest.Referrer) {
	t.Helper()
	var err error
	if sig, err = e.upstream.PushReferrer("library/node", ix.Descriptor, cosignSigType, []byte("signature of node:10")); err != nil {
		t.Fatal(err)
	}
	if sbom, err = e.upstream.PushReferrer("library/node", ix.Descriptor, sbomType, []byte(`{"spdxVersion":"SPDX-2.3"}`)); err != nil {
		t.Fatal(err)
	}
	e.upstream.Reset()
	return sig, sbom
}

// referrers asks the mirror for subject's referrers in library/node and
// returns the answer and its listing.
func (e *env) referrers(t *testing.T, subject digest.Digest, query string) (response, []ocispec.Descriptor) {
	t.Helper()
	got := e.do(t, http.MethodGet, "/v2/library/node/referrers/"+subject.String()+query, nil)
	if got.err != nil || got.status != http.StatusOK {
		t.Fatalf("GET referrers%s = %d %v: %s", query, got.status, got.err, got.body)
	}
	if ct := got.header.Get("Content-Type"); ct != ocispec.MediaTypeImageIndex {
		t.Fatalf("GET referrers: Content-Type %q, want %s", ct, ocispec.MediaTypeImageIndex)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(got.body, &idx); err != nil || idx.SchemaVersion != 2 || idx.Manifests == nil {
		t.Fatalf("GET referrers: %s is not an image index with a manifests list (%v)", got.body, err)
	}
	return got, idx.Manifests
}

// upstreamReferrerLookups counts the upstream requests for subject's
// referrers: to the API, and for the tag schema's fallback index.
func (e *env) upstreamReferrerLookups(subject digest.Digest) (api, fallback int) {
	api = e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindReferrers })
	fallback = e.upstream.ManifestGets("library/node", upstream.FallbackTag(subject))
	return api, fallback
}

func descriptorDigests(descs []ocispec.Descriptor) []digest.Digest {
	var ds []digest.Digest
	for _, d := range descs {
		ds = append(ds, d.Digest)
	}
	slices.Sort(ds)
	return ds
}

func sortedDigests(ds ...digest.Digest) []digest.Digest {
	slices.Sort(ds)
	return ds
}

// TestReferrersOfProxiedImagesAreListed: the referrers of a proxied image
// are listed through the mirror, from an upstream with the referrers API
// and from one without it (the tag-schema fallback); artifactType filters
// both; the listing is cached for the tag TTL; the artifacts themselves are
// pulled through the same repository.
func TestReferrersOfProxiedImagesAreListed(t *testing.T) {
	t.Parallel()
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "tag schema"}[api], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{referrers: api, tagTTL: time.Minute})
			ix := e.pushNode(t, 1, 256)
			sig, sbom := e.pushReferrers(t, ix)

			_, all := e.referrers(t, ix.Descriptor.Digest, "")
			if got, want := descriptorDigests(all), sortedDigests(sig.Descriptor.Digest, sbom.Descriptor.Digest); !slices.Equal(got, want) {
				t.Fatalf("referrers = %v, want %v", got, want)
			}
			for _, d := range all {
				if d.ArtifactType == "" || d.MediaType != ocispec.MediaTypeImageManifest || d.Size <= 0 {
					t.Errorf("listed %+v without its artifact type, media type or size", d)
				}
			}
			apiAsked, fallbackAsked := e.upstreamReferrerLookups(ix.Descriptor.Digest)
			if apiAsked != 1 || (fallbackAsked == 1) == api {
				t.Fatalf("upstream asked %d times by the API and %d times by the fallback tag", apiAsked, fallbackAsked)
			}

			got, sigs := e.referrers(t, ix.Descriptor.Digest, "?artifactType="+url.QueryEscape(cosignSigType))
			if len(sigs) != 1 || sigs[0].Digest != sig.Descriptor.Digest || got.header.Get("OCI-Filters-Applied") != "artifactType" {
				t.Fatalf("filtered by artifactType: %v, OCI-Filters-Applied %q; want the signature alone, filter applied",
					descriptorDigests(sigs), got.header.Get("OCI-Filters-Applied"))
			}
			if again, _ := e.upstreamReferrerLookups(ix.Descriptor.Digest); again != apiAsked {
				t.Fatalf("a listing within the tag TTL went upstream again (%d requests to the API)", again)
			}
			e.expectContent(t, "/v2/library/node/manifests/"+sig.Descriptor.Digest.String(), sig.Descriptor, sig.Bytes)

			_, none := e.referrers(t, ix.Images[0].Manifest.Digest, "")
			if len(none) != 0 {
				t.Fatalf("referrers of an unsigned manifest = %v, want none", descriptorDigests(none))
			}
		})
	}
}

// TestReferrersRevalidateAfterTheTagTTLAndServeStaleOnError: past the tag
// TTL the listing is asked again (a new signature shows); when the
// upstream fails, the cached listing is served stale with a Warning, until
// the stale-if-error window ends.
func TestReferrersRevalidateAfterTheTagTTLAndServeStaleOnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{referrers: true, tagTTL: time.Minute, staleIfError: time.Hour})
	ix := e.pushNode(t, 1, 256)
	sig, _ := e.pushReferrers(t, ix)
	e.referrers(t, ix.Descriptor.Digest, "")

	second, err := e.upstream.PushReferrer("library/node", ix.Descriptor, cosignSigType, []byte("second signature"))
	if err != nil {
		t.Fatal(err)
	}
	_, sigs := e.referrers(t, ix.Descriptor.Digest, "?artifactType="+url.QueryEscape(cosignSigType))
	if len(sigs) != 1 {
		t.Fatalf("within the TTL: %d signatures, want the cached 1", len(sigs))
	}
	e.clock.Advance(2 * time.Minute)
	_, sigs = e.referrers(t, ix.Descriptor.Digest, "?artifactType="+url.QueryEscape(cosignSigType))
	if got, want := descriptorDigests(sigs), sortedDigests(sig.Descriptor.Digest, second.Descriptor.Digest); !slices.Equal(got, want) {
		t.Fatalf("past the TTL: signatures %v, want %v", got, want)
	}

	e.upstream.SetDown(true)
	e.clock.Advance(2 * time.Minute)
	got, sigs := e.referrers(t, ix.Descriptor.Digest, "?artifactType="+url.QueryEscape(cosignSigType))
	if len(sigs) != 2 || !strings.Contains(got.header.Get("Warning"), "110") {
		t.Fatalf("upstream down: %d signatures, Warning %q; want the 2 cached, served stale", len(sigs), got.header.Get("Warning"))
	}
	e.clock.Advance(2 * time.Hour)
	if late := e.do(t, http.MethodGet, "/v2/library/node/referrers/"+ix.Descriptor.Digest.String(), nil); late.status < 500 {
		t.Fatalf("past stale-if-error with the upstream down: %d %s, want a 5xx", late.status, late.body)
	}
}

// TestAttackReferrersOfPrivateRepositories: the referrers of a repository
// only the mirror's credentials read are not listed to anonymous clients,
// whose requests never reach the upstream's referrers; and listings that
// go upstream are charged against the client's miss limit.
func TestAttackReferrersOfPrivateRepositories(t *testing.T) {
	t.Parallel()
	private := newEnv(t, envOptions{referrers: true, private: true, unexposed: true})
	ix := private.pushNode(t, 1, 256)
	private.pushReferrers(t, ix)
	got := private.do(t, http.MethodGet, "/v2/library/node/referrers/"+ix.Descriptor.Digest.String(), nil)
	if got.status != http.StatusForbidden || strings.Contains(string(got.body), "manifests") {
		t.Fatalf("anonymous referrers of a private repository = %d %s, want 403 and no listing", got.status, got.body)
	}
	if api, fallback := private.upstreamReferrerLookups(ix.Descriptor.Digest); api+fallback != 0 {
		t.Fatalf("the upstream was asked for a private repository's referrers %d times", api+fallback)
	}

	// The first listing costs two misses (the repository's visibility, then
	// the listing), each next one a miss of its own.
	const burst = 4
	limited := newEnv(t, envOptions{referrers: true, missLimits: mirror.MissLimits{PerClientRate: 0.001, PerClientBurst: burst}})
	limited.pushNode(t, 1, 256)
	statuses := []int{}
	for i := range 5 {
		path := "/v2/library/node/referrers/" + digest.FromString(strings.Repeat("x", i)).String()
		statuses = append(statuses, limited.do(t, http.MethodGet, path, nil).status)
	}
	if want := []int{200, 200, 200, 503, 503}; !slices.Equal(statuses, want) {
		t.Fatalf("invented referrers listings answered %v, want %v: listings past the miss burst are refused", statuses, want)
	}
}

// TestSignatureTagsResolveThroughTheMirror: cosign without the referrers
// API keeps a signature as an image tagged sha256-<hex>.sig next to the
// signed image; cosign verify pulls that tag and its layer, and through
// the mirror it resolves like any tag.
func TestSignatureTagsResolveThroughTheMirror(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 256)
	payload := []byte(`{"critical":{"identity":{"docker-reference":"library/node"},"image":{"docker-manifest-digest":"` +
		ix.Descriptor.Digest.String() + `"},"type":"cosign container image signature"},"optional":null}`)
	config := []byte(`{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(payload).String() + `"]}}`)
	layer := ocispec.Descriptor{
		MediaType:   "application/vnd.dev.cosign.simplesigning.v1+json",
		Digest:      e.upstream.PutBlob(payload),
		Size:        int64(len(payload)),
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQDfake"},
	}
	sigManifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: e.upstream.PutBlob(config), Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{layer},
	})
	if err != nil {
		t.Fatal(err)
	}
	sigTag := upstream.FallbackTag(ix.Descriptor.Digest) + ".sig"
	want, err := e.upstream.PutManifest("library/node", sigTag, ocispec.MediaTypeImageManifest, sigManifest)
	if err != nil {
		t.Fatal(err)
	}

	ref, err := name.ParseReference(strings.TrimPrefix(e.mirror.URL, "http://")+"/library/node:"+sigTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s through the mirror: %v", sigTag, err)
	}
	if d, err := img.Digest(); err != nil || d.String() != want.String() {
		t.Fatalf("%s resolved to %v (%v), want %s", sigTag, d, err, want)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("signature layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != string(payload) {
		t.Fatalf("signature payload through the mirror = %q, %v", got, err)
	}
}

// TestReferrersWithHostedRepositories: with hosted repositories
// configured, a proxied name's referrers still come from its upstream,
// and a hosted name's from what was pushed to it.
func TestReferrersWithHostedRepositories(t *testing.T) {
	t.Parallel()
	e := newHostedEnvOver(t, mirror.HostedOptions{Repositories: []string{"team/**"}}, registrytest.Options{Referrers: true})
	ix, err := e.hub.PushIndex("other/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 256, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := e.hub.PushReferrer("other/app", ix.Descriptor, cosignSigType, []byte("signature"))
	if err != nil {
		t.Fatal(err)
	}
	listing := func(path string) []digest.Digest {
		t.Helper()
		got := e.send(t, http.MethodGet, path, nil, nil, "", "")
		var idx ocispec.Index
		if got.status != http.StatusOK || json.Unmarshal(got.body, &idx) != nil {
			t.Fatalf("GET %s = %d %s", path, got.status, got.body)
		}
		return descriptorDigests(idx.Manifests)
	}
	if got := listing("/v2/other/app/referrers/" + ix.Descriptor.Digest.String()); !slices.Equal(got, []digest.Digest{sig.Descriptor.Digest}) {
		t.Fatalf("referrers of the proxied other/app = %v, want the upstream's signature %s", got, sig.Descriptor.Digest)
	}
	if got := listing("/v2/team/app/referrers/" + ix.Descriptor.Digest.String()); len(got) != 0 {
		t.Fatalf("referrers in the hosted team/app = %v, want none: nothing was pushed there", got)
	}
	if asked := e.hub.CountRequests(func(r registrytest.Request) bool { return r.Repo == "team/app" }); asked != 0 {
		t.Fatalf("the upstream was asked %d times about the hosted name team/app", asked)
	}
}

// pushHostedReferrer pushes to the hosted ref an OCI artifact whose
// subject is subject, and returns its digest.
func (e *hostedEnv) pushHostedReferrer(t *testing.T, ref string, subject ocispec.Descriptor) digest.Digest {
	t.Helper()
	img := mutate.MediaType(randomImage(t), types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, sbomType)
	h, err := v1.NewHash(subject.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	artifact := mutate.Subject(img, v1.Descriptor{MediaType: types.MediaType(subject.MediaType), Digest: h, Size: subject.Size}).(v1.Image)
	e.pushImage(t, ref, artifact)
	return digest.Digest(imageDigest(t, artifact).String())
}

// TestReferrersOfHostedNamesThatFallThroughAreMerged: a hosted name whose
// pulls fall through lists its own referrers and its upstream namesake's;
// when the upstream fails, its own alone, with a Warning.
func TestReferrersOfHostedNamesThatFallThroughAreMerged(t *testing.T) {
	t.Parallel()
	e := newHostedEnvOver(t, mirror.HostedOptions{Repositories: []string{"team/**"}, FallThrough: []string{"team/**"}},
		registrytest.Options{Referrers: true})
	ix, err := e.hub.PushIndex("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 256, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := e.hub.PushReferrer("team/app", ix.Descriptor, cosignSigType, []byte("upstream signature"))
	if err != nil {
		t.Fatal(err)
	}
	mine := e.pushHostedReferrer(t, "team/app:sbom", ix.Descriptor)

	get := func(subject digest.Digest) hostedResponse {
		t.Helper()
		got := e.send(t, http.MethodGet, "/v2/team/app/referrers/"+subject.String(), nil, nil, "", "")
		if got.status != http.StatusOK {
			t.Fatalf("GET referrers of %s = %d %s", subject, got.status, got.body)
		}
		return got
	}
	listed := func(got hostedResponse) []digest.Digest {
		var idx ocispec.Index
		if err := json.Unmarshal(got.body, &idx); err != nil {
			t.Fatal(err)
		}
		return descriptorDigests(idx.Manifests)
	}
	if got, want := listed(get(ix.Descriptor.Digest)), sortedDigests(sig.Descriptor.Digest, mine); !slices.Equal(got, want) {
		t.Fatalf("referrers = %v, want the upstream's and the hosted one %v", got, want)
	}

	other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("other subject"), Size: 100}
	onlyMine := e.pushHostedReferrer(t, "team/app:other-sbom", other)
	// The push itself looked up other's referrers (a client keeping the
	// tag schema up to date does): wait until that listing is too old to
	// be served stale.
	e.clock.Advance(mirror.DefaultTagTTL + mirror.DefaultStaleIfError + time.Minute)
	e.hub.SetDown(true)
	got := get(other.Digest)
	if l := listed(got); !slices.Equal(l, []digest.Digest{onlyMine}) || !strings.Contains(got.header.Get("Warning"), "199") {
		t.Fatalf("upstream down: referrers %v, Warning %q; want the hosted %s with a warning", l, got.header.Get("Warning"), onlyMine)
	}
}
