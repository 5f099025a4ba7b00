package mirror

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// upstreamManifestDoc is what the mirror checks of a manifest an upstream
// sent. SchemaVersion is a pointer so that a document without one (an HTML
// page, some other JSON) is told apart from one with a wrong value.
type upstreamManifestDoc struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
}

// manifestMediaTypes are the manifest types the mirror stores and serves:
// the ones it asks upstreams for, and what dockerd and containerd pull.
var manifestMediaTypes = map[string]bool{
	ociserver.MediaTypeDockerManifest:     true,
	ociserver.MediaTypeDockerManifestList: true,
	ocispec.MediaTypeImageManifest:        true,
	ocispec.MediaTypeImageIndex:           true,
}

func isIndexType(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == ociserver.MediaTypeDockerManifestList
}

// checkUpstreamManifest decides whether bytes an upstream sent as a manifest
// are one, before anything is cached: a JSON document of schema version 2,
// of a manifest media type, whose descriptors carry well-formed digests. A
// proxy's HTML error page, a truncated document or a manifest naming
// "sha256:../x" is refused here, so no tag ever points at it and nothing
// downstream (clients, prune planning) ever builds a path or URL from it.
// It returns the media type to store: the upstream's when that is a
// manifest type, otherwise the document's own.
func checkUpstreamManifest(upstreamType string, data []byte) (string, error) {
	var doc upstreamManifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("not a JSON manifest: %w", err)
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return "", fmt.Errorf("schemaVersion is not 2")
	}
	mediaType, err := resolveManifestType(upstreamType, doc)
	if err != nil {
		return "", err
	}
	if isIndexType(mediaType) {
		if doc.Config != nil || doc.Layers != nil {
			return "", fmt.Errorf("an index (%s) must not have a config or layers", mediaType)
		}
	} else if doc.Config == nil || doc.Manifests != nil {
		return "", fmt.Errorf("an image manifest (%s) needs a config and no manifests", mediaType)
	}
	return mediaType, checkDescriptors(doc)
}

// resolveManifestType picks the media type from the upstream's Content-Type
// and the document's mediaType field, which must agree when both are set:
// a client decides how to read the bytes by the type, so an ambiguous
// manifest is refused rather than guessed at.
func resolveManifestType(upstreamType string, doc upstreamManifestDoc) (string, error) {
	switch {
	case manifestMediaTypes[upstreamType] && doc.MediaType != "" && doc.MediaType != upstreamType:
		return "", fmt.Errorf("served as %s but its mediaType is %q", upstreamType, truncate(doc.MediaType))
	case manifestMediaTypes[upstreamType]:
		return upstreamType, nil
	case manifestMediaTypes[doc.MediaType]:
		return doc.MediaType, nil
	case doc.MediaType == "" && doc.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case doc.MediaType == "" && doc.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("unsupported media type %q", truncate(upstreamType))
}

// checkDescriptors requires every digest the manifest names to be well
// formed: a registered algorithm and lower-case hex of its length.
func checkDescriptors(doc upstreamManifestDoc) error {
	descs := append(append([]ocispec.Descriptor(nil), doc.Layers...), doc.Manifests...)
	for _, d := range []*ocispec.Descriptor{doc.Config, doc.Subject} {
		if d != nil {
			descs = append(descs, *d)
		}
	}
	for _, desc := range descs {
		if _, err := digest.Parse(string(desc.Digest)); err != nil {
			return fmt.Errorf("it names an invalid digest %q", truncate(string(desc.Digest)))
		}
		if desc.Size < 0 {
			return fmt.Errorf("it names %s with a negative size", desc.Digest)
		}
	}
	return nil
}

// invalidUpstreamManifest is what a client sees when the manifest that
// from ("upstream <host>", or a peer replica) sent failed
// checkUpstreamManifest: the mirror's gateway failed, not the client.
func invalidUpstreamManifest(from string, d digest.Digest, err error) error {
	return &Error{Code: ociserver.CodeUnavailable, Status: http.StatusBadGateway, Err: err,
		Message: fmt.Sprintf("%s sent an invalid manifest for %s: %v", from, d, err)}
}
