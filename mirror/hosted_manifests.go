package mirror

import (
	"encoding/json"
	"errors"
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
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
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

// pushedManifest is a validated manifest, ready to store.
type pushedManifest struct {
	desc    ocispec.Descriptor // as the referrers API lists it
	data    []byte
	refs    []digest.Digest // what must be stored for it to be pulled
	subject digest.Digest
}

// putManifest stores a pushed manifest, by tag or by digest, after checking
// that it is one the mirror can serve: a known media type, a digest that
// matches, and every blob and manifest it names already pushed (or cached).
func (m *Mirror) putManifest(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	data, tooBig, err := readAll(r.Body, maxManifestSize)
	if err != nil {
		return err
	}
	if tooBig {
		return &Error{Code: codeManifestInvalid, Status: http.StatusRequestEntityTooLarge,
			Message: "manifests are limited to 4 MiB"}
	}
	// A manifest pushed by digest is stored under that digest, whatever its
	// algorithm; one pushed by tag is named by its sha256, as the spec says.
	alg := digest.Canonical
	if hr.digest != "" {
		alg = hr.digest.Algorithm() // passed parseDigest
	}
	pm, err := parseManifest(r.Header.Get("Content-Type"), data, alg)
	if err != nil {
		return err
	}
	if hr.digest != "" && hr.digest != pm.desc.Digest {
		return newError(codeDigestInvalid, "the manifest hashes to %s, not %s", pm.desc.Digest, hr.digest)
	}
	tags := r.URL.Query()["tag"]
	if hr.tag != "" {
		tags = append(tags, hr.tag)
	}
	for _, tag := range tags {
		if !validTag(tag) {
			return newError(codeTagInvalid, "invalid tag %q", truncate(tag))
		}
	}
	err = m.hosted.store.PutUserManifest(r.Context(), hr.hostedName, clientOf(r.Context()).user, m.hosted.uploads.MaxStorage,
		pm.desc, pm.data, pm.refs, pm.subject, tags)
	if isQuota(err) {
		return quotaErr(err)
	}
	var missing interface{ MissingDigest() digest.Digest }
	if errors.As(err, &missing) {
		return &Error{Code: codeManifestBlobUnknown, Err: err,
			Message: "the manifest refers to " + missing.MissingDigest().String() + ", which has not been pushed"}
	}
	if err != nil {
		return err
	}
	tag := hr.tag
	if tag == "" && len(tags) > 0 {
		tag = tags[0]
	}
	m.notify(r.Context(), Event{Action: EventPush, Repository: hr.hostedName, Tag: tag, Digest: pm.desc.Digest,
		MediaType: pm.desc.MediaType, Size: pm.desc.Size, Actor: clientOf(r.Context()).user},
		hr.name, "manifests", pm.desc.Digest.String())
	h := w.Header()
	h.Set("Location", manifestLocation(hr.name, pm.desc.Digest))
	h.Set("Docker-Content-Digest", pm.desc.Digest.String())
	if pm.subject != "" {
		h.Set("OCI-Subject", pm.subject.String())
	}
	if r.URL.Query().Has("tag") {
		h.Set("OCI-Tag", strings.Join(r.URL.Query()["tag"], ","))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// parseManifest validates a pushed manifest, names it by its alg digest and
// works out what it refers to.
func parseManifest(contentType string, data []byte, alg digest.Algorithm) (pushedManifest, error) {
	var doc manifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return pushedManifest{}, newError(codeManifestInvalid, "the manifest is not valid JSON")
	}
	mediaType := doc.MediaType
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil {
			mediaType = mt
		}
	}
	if doc.MediaType != "" && doc.MediaType != mediaType {
		return pushedManifest{}, newError(codeManifestInvalid, "Content-Type %s does not match the manifest's mediaType %s",
			truncate(mediaType), truncate(doc.MediaType))
	}
	if doc.SchemaVersion != 2 {
		return pushedManifest{}, newError(codeManifestInvalid, "only schemaVersion 2 manifests are supported")
	}
	pm := pushedManifest{
		desc: ocispec.Descriptor{
			MediaType:    mediaType,
			Digest:       alg.FromBytes(data),
			Size:         int64(len(data)),
			ArtifactType: doc.ArtifactType,
			Annotations:  doc.Annotations,
		},
		data: data,
	}
	var err error
	switch mediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		err = pm.imageRefs(doc)
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		err = pm.indexRefs(doc)
	default:
		return pushedManifest{}, newError(codeManifestInvalid, "unsupported manifest media type %q", truncate(mediaType))
	}
	if err != nil {
		return pushedManifest{}, err
	}
	if doc.Subject != nil {
		if pm.subject, err = descriptorDigest(*doc.Subject); err != nil {
			return pushedManifest{}, err
		}
	}
	return pm, nil
}

// imageRefs requires the config and the layers, except those a registry
// may not have: non-distributable ("foreign") layers are fetched from their
// URLs, never pushed.
func (pm *pushedManifest) imageRefs(doc manifestDoc) error {
	if doc.Config == nil {
		return newError(codeManifestInvalid, "an image manifest needs a config")
	}
	if pm.desc.ArtifactType == "" {
		pm.desc.ArtifactType = doc.Config.MediaType
	}
	for _, desc := range append([]ocispec.Descriptor{*doc.Config}, doc.Layers...) {
		if isNonDistributable(desc) {
			continue
		}
		d, err := descriptorDigest(desc)
		if err != nil {
			return err
		}
		pm.refs = append(pm.refs, d)
	}
	return nil
}

func (pm *pushedManifest) indexRefs(doc manifestDoc) error {
	for _, desc := range doc.Manifests {
		d, err := descriptorDigest(desc)
		if err != nil {
			return err
		}
		pm.refs = append(pm.refs, d)
	}
	return nil
}

func isNonDistributable(desc ocispec.Descriptor) bool {
	return len(desc.URLs) > 0 || strings.Contains(desc.MediaType, "nondistributable") ||
		strings.Contains(desc.MediaType, ".foreign.")
}

func descriptorDigest(desc ocispec.Descriptor) (digest.Digest, error) {
	d, err := parseDigest(string(desc.Digest))
	if err != nil {
		return "", newError(codeManifestInvalid, "the manifest names an invalid or unsupported digest %q", truncate(string(desc.Digest)))
	}
	return d, nil
}

// deleteManifest deletes a manifest by digest, or untags it by tag.
func (h *hostedRepos) deleteManifest(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	var err error
	if hr.tag != "" {
		err = h.store.DeleteTag(r.Context(), hr.hostedName, hr.tag)
	} else {
		err = h.store.DeleteManifest(r.Context(), hr.hostedName, hr.digest)
	}
	if hostedNotFound(err) {
		return &Error{Code: codeManifestUnknown, Message: "not in " + hr.hostedName, Err: err}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *hostedRepos) deleteBlob(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	err := h.store.UnlinkBlob(r.Context(), hr.hostedName, hr.digest)
	if hostedNotFound(err) {
		return &Error{Code: codeBlobUnknown, Message: "not in " + hr.hostedName, Err: err}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
