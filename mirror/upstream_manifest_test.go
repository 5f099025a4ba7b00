package mirror

import (
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// FuzzCheckUpstreamManifest checks that no upstream bytes panic the
// manifest check, and that whatever it accepts is a manifest of a known
// type whose every digest is well formed: nothing a later path or URL could
// be built from unchecked.
func FuzzCheckUpstreamManifest(f *testing.F) {
	image := `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","config":{"digest":"` +
		testDigest.String() + `","size":1},"layers":[{"digest":"` + testDigest.String() + `","size":2}]}`
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"` + ocispec.MediaTypeImageManifest + `","digest":"` +
		testDigest.String() + `","size":3}]}`
	for _, seed := range []struct{ mediaType, body string }{
		{ocispec.MediaTypeImageManifest, image},
		{"application/json", index},
		{ociserver.MediaTypeDockerManifestList, index},
		{"text/html", "<html></html>"},
		{ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":{"digest":"sha256:../x"}}`},
	} {
		f.Add(seed.mediaType, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, mediaType string, data []byte) {
		got, err := checkUpstreamManifest(mediaType, data)
		if err != nil {
			return
		}
		if !manifestMediaTypes[got] {
			t.Fatalf("accepted media type %q", got)
		}
		var doc upstreamManifestDoc
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("accepted bytes that are not JSON: %v", err)
		}
		descs := append(append([]ocispec.Descriptor(nil), doc.Layers...), doc.Manifests...)
		if doc.Config != nil {
			descs = append(descs, *doc.Config)
		}
		if doc.Subject != nil {
			descs = append(descs, *doc.Subject)
		}
		for _, d := range descs {
			if err := d.Digest.Validate(); err != nil {
				t.Fatalf("accepted a manifest naming digest %q: %v", d.Digest, err)
			}
		}
	})
}
