package ociserver

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifestSize caps a pushed manifest: distribution's limit, and what
// clients expect a registry to accept.
const maxManifestSize = 4 << 20

// Docker's manifest media types; the OCI ones are in ocispec.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// manifestDoc is what the mirror reads of a pushed image manifest or index.
type manifestDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, req Request) error {
	var pm *PushedManifest
	read := func() (*PushedManifest, error) {
		var err error
		pm, err = readPushedManifest(r, req)
		return pm, err
	}
	if err := s.backend.PushManifest(r.Context(), req.Repo(), read); err != nil {
		return err
	}
	if pm == nil {
		return NewError(CodeUnknown, "the backend stored no manifest")
	}
	h := w.Header()
	h.Set("Location", manifestLocation(req.Name, pm.Desc.Digest))
	h.Set("Docker-Content-Digest", pm.Desc.Digest.String())
	if pm.Subject != "" {
		h.Set("OCI-Subject", pm.Subject.String())
	}
	if r.URL.Query().Has("tag") {
		h.Set("OCI-Tag", strings.Join(r.URL.Query()["tag"], ","))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// readPushedManifest reads, parses and checks the manifest a PUT carries:
// its size, JSON, media type, the digest it is pushed to, and its tags.
func readPushedManifest(r *http.Request, req Request) (*PushedManifest, error) {
	data, tooBig, err := readAll(r.Body, maxManifestSize)
	if err != nil {
		return nil, err
	}
	if tooBig {
		return nil, &Error{Code: CodeManifestInvalid, Status: http.StatusRequestEntityTooLarge,
			Message: "manifests are limited to 4 MiB"}
	}
	alg := digest.Canonical
	if req.Digest != "" {
		alg = req.Digest.Algorithm() // passed ParseDigest
	}
	pm, err := parseManifest(r.Header.Get("Content-Type"), data, alg)
	if err != nil {
		return nil, err
	}
	if req.Digest != "" && req.Digest != pm.Desc.Digest {
		return nil, NewError(CodeDigestInvalid, "the manifest hashes to %s, not %s", pm.Desc.Digest, req.Digest)
	}
	if req.Tag != "" {
		pm.Tags = append(pm.Tags, req.Tag)
	}
	pm.Tags = append(pm.Tags, r.URL.Query()["tag"]...)
	for _, tag := range pm.Tags {
		if !ValidTag(tag) {
			return nil, NewError(CodeTagInvalid, "invalid tag %q", Truncate(tag))
		}
	}
	return &pm, nil
}

// parseManifest validates a pushed manifest, names it by its alg digest and
// works out what it refers to.
func parseManifest(contentType string, data []byte, alg digest.Algorithm) (PushedManifest, error) {
	var doc manifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return PushedManifest{}, NewError(CodeManifestInvalid, "the manifest is not valid JSON")
	}
	mediaType := doc.MediaType
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil {
			mediaType = mt
		}
	}
	if doc.MediaType != "" && doc.MediaType != mediaType {
		return PushedManifest{}, NewError(CodeManifestInvalid, "Content-Type %s does not match the manifest's mediaType %s",
			Truncate(mediaType), Truncate(doc.MediaType))
	}
	if doc.SchemaVersion != 2 {
		return PushedManifest{}, NewError(CodeManifestInvalid, "only schemaVersion 2 manifests are supported")
	}
	pm := PushedManifest{
		Desc: ocispec.Descriptor{
			MediaType:    mediaType,
			Digest:       alg.FromBytes(data),
			Size:         int64(len(data)),
			ArtifactType: doc.ArtifactType,
			Annotations:  doc.Annotations,
		},
		Data: data,
	}
	var err error
	switch mediaType {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		err = pm.imageRefs(doc)
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		err = pm.indexRefs(doc)
	default:
		return PushedManifest{}, NewError(CodeManifestInvalid, "unsupported manifest media type %q", Truncate(mediaType))
	}
	if err != nil {
		return PushedManifest{}, err
	}
	if doc.Subject != nil {
		if pm.Subject, err = descriptorDigest(*doc.Subject); err != nil {
			return PushedManifest{}, err
		}
	}
	return pm, nil
}

// imageRefs requires the config and the layers, except those a registry
// may not have: non-distributable ("foreign") layers are fetched from their
// URLs, never pushed.
func (pm *PushedManifest) imageRefs(doc manifestDoc) error {
	if doc.Config == nil {
		return NewError(CodeManifestInvalid, "an image manifest needs a config")
	}
	if pm.Desc.ArtifactType == "" {
		pm.Desc.ArtifactType = doc.Config.MediaType
	}
	for _, desc := range append([]ocispec.Descriptor{*doc.Config}, doc.Layers...) {
		if isNonDistributable(desc) {
			continue
		}
		d, err := descriptorDigest(desc)
		if err != nil {
			return err
		}
		pm.Refs = append(pm.Refs, d)
	}
	return nil
}

func (pm *PushedManifest) indexRefs(doc manifestDoc) error {
	for _, desc := range doc.Manifests {
		d, err := descriptorDigest(desc)
		if err != nil {
			return err
		}
		pm.Refs = append(pm.Refs, d)
	}
	return nil
}

func isNonDistributable(desc ocispec.Descriptor) bool {
	return len(desc.URLs) > 0 || strings.Contains(desc.MediaType, "nondistributable") ||
		strings.Contains(desc.MediaType, ".foreign.")
}

func descriptorDigest(desc ocispec.Descriptor) (digest.Digest, error) {
	d, err := ParseDigest(string(desc.Digest))
	if err != nil {
		return "", NewError(CodeManifestInvalid, "the manifest names an invalid or unsupported digest %q", Truncate(string(desc.Digest)))
	}
	return d, nil
}

// readAll reads body up to limit bytes; tooBig reports that it holds more.
func readAll(body io.Reader, limit int64) (data []byte, tooBig bool, err error) {
	data, err = io.ReadAll(io.LimitReader(body, limit+1))
	if int64(len(data)) > limit {
		return nil, true, err
	}
	return data, false, err
}

func blobLocation(name string, d digest.Digest) string {
	return "/v2/" + name + "/blobs/" + d.String()
}

func manifestLocation(name string, d digest.Digest) string {
	return "/v2/" + name + "/manifests/" + d.String()
}
