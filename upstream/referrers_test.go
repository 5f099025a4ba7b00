package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// TestReferrersFromTheAPIOrTheTagSchema: a registry with the referrers API
// is asked there; one without it (404) is read through the tag schema's
// fallback index. Both list the same artifacts, and a subject without
// referrers has an empty list, not an error.
func TestReferrersFromTheAPIOrTheTagSchema(t *testing.T) {
	t.Parallel()
	for _, api := range []bool{true, false} {
		name := map[bool]string{true: "referrers API", false: "tag schema"}[api]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg, ix := privateRegistry(t, registrytest.Options{Referrers: api})
			sig, err := reg.PushReferrer("private/node", ix.Descriptor, "application/vnd.dev.cosign.artifact.sig.v1+json", []byte("signature"))
			if err != nil {
				t.Fatal(err)
			}
			sbom, err := reg.PushReferrer("private/node", ix.Descriptor, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
			if err != nil {
				t.Fatal(err)
			}
			c, _ := newClient(t, reg, Config{}, staticKeys(t, reg.Host(), password), Options{})
			reg.Reset()
			got, err := c.Referrers(context.Background(), "private/node", ix.Descriptor.Digest, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := []digest.Digest{sig.Descriptor.Digest, sbom.Descriptor.Digest}
			if d := digests(got); !sameDigests(d, want) {
				t.Fatalf("referrers = %v, want %v", d, want)
			}
			for _, desc := range got {
				if desc.ArtifactType == "" || desc.MediaType != ocispec.MediaTypeImageManifest || desc.Size <= 0 {
					t.Errorf("descriptor %+v lacks its artifact type, media type or size", desc)
				}
			}
			apiAsked := reg.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindReferrers })
			fallbackAsked := reg.ManifestGets("private/node", FallbackTag(ix.Descriptor.Digest))
			if apiAsked != 1 || (fallbackAsked == 1) == api {
				t.Errorf("asked the API %d times and the fallback tag %d times", apiAsked, fallbackAsked)
			}

			none, err := c.Referrers(context.Background(), "private/node", ix.Images[0].Manifest.Digest, nil)
			if err != nil || len(none) != 0 {
				t.Fatalf("referrers of a subject without any = %v, %v; want none", none, err)
			}
		})
	}
}

// TestReferrersFollowPagesAndRefuseInvalidEntries: the API's Link pages
// are followed, each page after the first asked of nextPage; an entry
// that names no valid digest fails the listing rather than reaching a
// client.
func TestReferrersFollowPagesAndRefuseInvalidEntries(t *testing.T) {
	t.Parallel()
	subject := digest.FromString("subject")
	first := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest.FromString("a").String() + `","size":10,"artifactType":"x/a"}]}`
	second := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest.FromString("b").String() + `","size":10,"artifactType":"x/b"}]}`
	invalid := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../etc","size":10}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(r.URL.Path, "/v2/bad/referrers/"):
			w.Write([]byte(invalid))
		case r.URL.Query().Get("page") == "2":
			w.Write([]byte(second))
		default:
			w.Header().Set("Link", `<`+r.URL.Path+`?page=2>; rel="next"`)
			w.Write([]byte(first))
		}
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	pages := 0
	got, err := c.Referrers(context.Background(), "good", subject, func() error { pages++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if d := digests(got); !slices.Equal(d, []digest.Digest{digest.FromString("a"), digest.FromString("b")}) || pages != 1 {
		t.Fatalf("referrers = %v after %d extra pages, want a and b after 1", d, pages)
	}
	stop := errors.New("no more")
	if _, err := c.Referrers(context.Background(), "good", subject, func() error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("a refused next page: err = %v, want it passed on", err)
	}
	if got, err := c.Referrers(context.Background(), "bad", subject, nil); err == nil {
		t.Fatalf("an invalid entry was accepted: %v", got)
	}
}

func digests(descs []ocispec.Descriptor) []digest.Digest {
	var ds []digest.Digest
	for _, d := range descs {
		ds = append(ds, d.Digest)
	}
	return ds
}

func sameDigests(a, b []digest.Digest) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
