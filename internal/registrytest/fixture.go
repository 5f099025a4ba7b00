package registrytest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types, which Docker Hub serves for most images.
const (
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// ImageOptions shapes generated images. The zero value gives small images
// with two layers per platform, Docker media types, linux/amd64 and linux/arm64.
type ImageOptions struct {
	// Layers is the number of layers per platform image; zero means 2.
	Layers int
	// LayerSize is the number of random bytes in each layer's one file;
	// zero means 1 KiB.
	LayerSize int64
	// Seed makes generation deterministic: the same seed and options give
	// the same digests.
	Seed uint64
	// Compress deflates layers at gzip.BestSpeed. Without it layers are
	// gzip streams of stored blocks: just as valid, and much faster to make
	// (random data does not compress anyway).
	Compress bool
	// OCI uses OCI media types instead of Docker's.
	OCI bool
	// Platforms are the index's platforms (PushImage uses the first);
	// nil means linux/amd64 and linux/arm64/v8.
	Platforms []ocispec.Platform
}

// DefaultPlatforms are the platforms of an index when ImageOptions has none.
var DefaultPlatforms = []ocispec.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

func (o ImageOptions) withDefaults() ImageOptions {
	if o.Layers <= 0 {
		o.Layers = 2
	}
	if o.LayerSize <= 0 {
		o.LayerSize = 1 << 10
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	return o
}

func (o ImageOptions) mediaTypes() (index, manifest, config, layer string) {
	if o.OCI {
		return ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
	}
	return MediaTypeDockerManifestList, MediaTypeDockerManifest, MediaTypeDockerConfig, MediaTypeDockerLayer
}

// Image is one pushed platform image.
type Image struct {
	// Manifest describes the image manifest; Platform is set for images
	// of an index.
	Manifest ocispec.Descriptor
	// ManifestBytes are the manifest's exact bytes.
	ManifestBytes []byte
	Config        ocispec.Descriptor
	Layers        []ocispec.Descriptor
}

// Blobs lists the image's config and layers.
func (img Image) Blobs() []ocispec.Descriptor {
	return append([]ocispec.Descriptor{img.Config}, img.Layers...)
}

// Index is a pushed multi-platform image.
type Index struct {
	Descriptor ocispec.Descriptor
	// Bytes are the index's exact bytes.
	Bytes  []byte
	Images []Image
}

// Blobs lists every config and layer of every platform.
func (ix Index) Blobs() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, img := range ix.Images {
		out = append(out, img.Blobs()...)
	}
	return out
}

// Size is the total size of all blobs.
func (ix Index) Size() int64 {
	var total int64
	for _, b := range ix.Blobs() {
		total += b.Size
	}
	return total
}

// PushIndex generates a multi-platform image and tags it repo:tag.
func (r *Registry) PushIndex(repo, tag string, opts ImageOptions) (Index, error) {
	opts = opts.withDefaults()
	indexType, _, _, _ := opts.mediaTypes()
	var ix Index
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: indexType}
	for i, p := range opts.Platforms {
		img, err := r.pushImage(repo, "", opts, i, p)
		if err != nil {
			return Index{}, err
		}
		ix.Images = append(ix.Images, img)
		idx.Manifests = append(idx.Manifests, img.Manifest)
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return Index{}, err
	}
	d, err := r.PutManifest(repo, tag, indexType, data)
	if err != nil {
		return Index{}, err
	}
	ix.Descriptor = ocispec.Descriptor{MediaType: indexType, Digest: d, Size: int64(len(data))}
	ix.Bytes = data
	return ix, nil
}

// PushImage generates a single-platform image (the first of opts.Platforms)
// and tags it repo:tag.
func (r *Registry) PushImage(repo, tag string, opts ImageOptions) (Image, error) {
	opts = opts.withDefaults()
	img, err := r.pushImage(repo, tag, opts, 0, opts.Platforms[0])
	if err != nil {
		return Image{}, err
	}
	img.Manifest.Platform = nil
	return img, nil
}

// pushImage generates and stores the image of platform number n. An empty
// tag stores the manifest by digest only.
func (r *Registry) pushImage(repo, tag string, opts ImageOptions, n int, p ocispec.Platform) (Image, error) {
	_, manifestType, configType, layerType := opts.mediaTypes()
	var img Image
	var diffIDs []digest.Digest
	for i := range opts.Layers {
		rng := rand.NewChaCha8(layerSeed(opts.Seed, repo, n, i))
		file := fmt.Sprintf("%s-%s-%d.bin", p.OS, p.Architecture, i)
		blob, diffID, err := buildLayer(rng, file, opts.LayerSize, opts.Compress)
		if err != nil {
			return Image{}, err
		}
		img.Layers = append(img.Layers, ocispec.Descriptor{MediaType: layerType, Digest: r.putRepoBlob(repo, blob), Size: int64(len(blob))})
		diffIDs = append(diffIDs, diffID)
	}
	config, err := imageConfig(p, diffIDs)
	if err != nil {
		return Image{}, err
	}
	img.Config = ocispec.Descriptor{MediaType: configType, Digest: r.putRepoBlob(repo, config), Size: int64(len(config))}

	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifestType,
		Config:    img.Config,
		Layers:    img.Layers,
	}
	data, err := json.Marshal(m)
	if err != nil {
		return Image{}, err
	}
	ref := tag
	if ref == "" {
		ref = digest.FromBytes(data).String()
	}
	d, err := r.PutManifest(repo, ref, manifestType, data)
	if err != nil {
		return Image{}, err
	}
	platform := p
	img.Manifest = ocispec.Descriptor{MediaType: manifestType, Digest: d, Size: int64(len(data)), Platform: &platform}
	img.ManifestBytes = data
	return img, nil
}

// layerSeed derives a distinct, reproducible RNG seed for one layer.
func layerSeed(seed uint64, repo string, platform, layer int) [32]byte {
	h := sha256.New()
	binary.Write(h, binary.BigEndian, [3]uint64{seed, uint64(platform), uint64(layer)})
	io.WriteString(h, repo)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// epoch is the fixed timestamp of generated images, for reproducibility.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// buildLayer makes a gzipped tar holding one directory and one file of size
// random bytes. It returns the compressed blob and the digest of the
// uncompressed tar (the diff ID the config lists), computed in one pass.
func buildLayer(rng io.Reader, file string, size int64, compress bool) ([]byte, digest.Digest, error) {
	var blob bytes.Buffer
	blob.Grow(int(size + size/64 + 4096))
	level := gzip.NoCompression
	if compress {
		level = gzip.BestSpeed
	}
	zw, err := gzip.NewWriterLevel(&blob, level)
	if err != nil {
		return nil, "", err
	}
	diffID := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(zw, diffID.Hash()))
	headers := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "regmirror/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX},
		{Typeflag: tar.TypeReg, Name: "regmirror/" + file, Mode: 0o644, Size: size, ModTime: epoch, Format: tar.FormatPAX},
	}
	for _, h := range headers {
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", err
		}
	}
	if _, err := io.CopyN(tw, rng, size); err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return blob.Bytes(), diffID.Digest(), nil
}

// imageConfig is a minimal but complete image config for platform p.
func imageConfig(p ocispec.Platform, diffIDs []digest.Digest) ([]byte, error) {
	created := epoch
	cfg := ocispec.Image{
		Created:  &created,
		Platform: p,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	for range diffIDs {
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: "registrytest"})
	}
	return json.Marshal(cfg)
}

// PutBlob stores data as a blob, available in every repository, and returns
// its digest. The registry keeps data; the caller must not modify it.
func (r *Registry) PutBlob(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	h, _ := blobHash(d)
	r.blobs.put(h, data)
	return d
}

// putRepoBlob stores data as a blob of repo alone, as Docker Hub scopes
// blobs to the repositories they were pushed to, and returns its digest.
func (r *Registry) putRepoBlob(repo string, data []byte) digest.Digest {
	d := r.PutBlob(data)
	h, _ := blobHash(d)
	r.blobs.scope(h, repo)
	return d
}

// PutManifest stores a manifest under repo:reference (and its digest)
// through the registry handler, bypassing auth and accounting, and returns
// its digest. Manifests an index refers to must be stored first.
func (r *Registry) PutManifest(repo, reference, mediaType string, data []byte) (digest.Digest, error) {
	req := httptest.NewRequest(http.MethodPut, "/v2/"+repo+"/manifests/"+reference, bytes.NewReader(data))
	req.Header.Set("Content-Type", mediaType)
	rec := httptest.NewRecorder()
	r.registry.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		return "", fmt.Errorf("registrytest: put manifest %s:%s: %d %s", repo, reference, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return digest.FromBytes(data), nil
}

// MountBlob makes blob d, stored already, a blob of repo too, as a
// cross-repository mount does on Docker Hub.
func (r *Registry) MountBlob(repo string, d digest.Digest) error {
	h, err := blobHash(d)
	if err != nil {
		return err
	}
	if _, ok := r.blobs.get(h); !ok {
		return fmt.Errorf("registrytest: mount %s into %s: no such blob", d, repo)
	}
	r.blobs.scope(h, repo)
	return nil
}
