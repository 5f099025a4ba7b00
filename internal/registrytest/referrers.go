package registrytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Referrer is an artifact pushed with PushReferrer.
type Referrer struct {
	// Descriptor describes the artifact's manifest as a referrers list
	// does: its artifact type included.
	Descriptor ocispec.Descriptor
	// Bytes are the manifest's exact bytes.
	Bytes []byte
}

// PushReferrer stores in repo an artifact of artifactType (a signature,
// an SBOM) whose subject is subject: an OCI image manifest with the
// artifact type as its config's media type, as cosign and oras write
// them, and payload as its one layer. The referrers API lists it; and, as
// clients do for registries without that API, the artifact is added to
// the tag-schema fallback index, tagged sha256-<hex of subject>.
func (r *Registry) PushReferrer(repo string, subject ocispec.Descriptor, artifactType string, payload []byte) (Referrer, error) {
	layer := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: r.putRepoBlob(repo, payload), Size: int64(len(payload))}
	config := []byte("{}")
	mf := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: artifactType, Digest: r.putRepoBlob(repo, config), Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{layer},
		Subject:   &subject,
	}
	data, err := json.Marshal(mf)
	if err != nil {
		return Referrer{}, err
	}
	d, err := r.PutManifest(repo, digest.FromBytes(data).String(), ocispec.MediaTypeImageManifest, data)
	if err != nil {
		return Referrer{}, err
	}
	ref := Referrer{
		Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(data)), ArtifactType: artifactType},
		Bytes:      data,
	}
	if err := r.addToFallbackIndex(repo, subject.Digest, ref.Descriptor); err != nil {
		return Referrer{}, err
	}
	return ref, nil
}

// FallbackTag is the tag of subject's referrers index in the tag schema
// of the distribution spec: "<algorithm>-<hex>".
func FallbackTag(subject digest.Digest) string {
	return string(subject.Algorithm()) + "-" + subject.Encoded()
}

// addToFallbackIndex adds desc to the index tagged FallbackTag(subject),
// making the index if there is none.
func (r *Registry) addToFallbackIndex(repo string, subject digest.Digest, desc ocispec.Descriptor) error {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	get := httptest.NewRequest(http.MethodGet, "/v2/"+repo+"/manifests/"+FallbackTag(subject), nil)
	rec := httptest.NewRecorder()
	r.registry.ServeHTTP(rec, get)
	switch rec.Code {
	case http.StatusOK:
		if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
			return fmt.Errorf("registrytest: fallback index of %s: %w", subject, err)
		}
	case http.StatusNotFound:
	default:
		return fmt.Errorf("registrytest: fallback index of %s: %d", subject, rec.Code)
	}
	idx.Manifests = append(idx.Manifests, desc)
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	_, err = r.PutManifest(repo, FallbackTag(subject), ocispec.MediaTypeImageIndex, data)
	return err
}
