package main

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// The upstream's account; its repositories are private, so every pull,
// the mirror's included, needs these credentials, as in real use.
const (
	upstreamUser     = "mirror-bot"
	upstreamPassword = "bench-s3cret"
)

// amd64 is the platform the clients pull, as dockerd on this machine would.
var amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

// image is a pushed single-platform image behind a one-entry index (what
// Docker Hub serves for most tags), as the clients see it.
type image struct {
	repo, tag string
	blobs     []ocispec.Descriptor // config and layers
	layers    int
	size      int64 // of all blobs
}

// startUpstream runs a Docker-Hub-like registry whose repositories all need
// credentials and pushes the two benchmark images into it.
func startUpstream(cfg config) (up *registrytest.Registry, big, small image, err error) {
	up, err = registrytest.Start(registrytest.Options{
		Username: upstreamUser,
		Password: upstreamPassword,
		Private:  []string{"library/*"},
	})
	if err != nil {
		return nil, image{}, image{}, err
	}
	if big, err = pushImage(up, "library/big", cfg.sizeMiB, cfg.layers, 1); err != nil {
		up.Close()
		return nil, image{}, image{}, err
	}
	if small, err = pushImage(up, "library/small", cfg.smallSizeMiB, cfg.smallLayers, 2); err != nil {
		up.Close()
		return nil, image{}, image{}, err
	}
	return up, big, small, nil
}

func pushImage(up *registrytest.Registry, repo string, sizeMiB, layers int, seed uint64) (image, error) {
	if layers <= 0 || sizeMiB <= 0 {
		return image{}, fmt.Errorf("%s: size and layers must be positive", repo)
	}
	ix, err := up.PushIndex(repo, "latest", registrytest.ImageOptions{
		Layers:    layers,
		LayerSize: int64(sizeMiB) << 20 / int64(layers),
		Seed:      seed,
		Platforms: []ocispec.Platform{amd64},
	})
	if err != nil {
		return image{}, fmt.Errorf("pushing %s: %w", repo, err)
	}
	img := image{repo: repo, tag: "latest", blobs: ix.Images[0].Blobs(), layers: layers}
	for _, b := range img.blobs {
		img.size += b.Size
	}
	return img, nil
}

// upstreamTraffic is what the upstream served for an image's blobs since
// its counters were last reset.
type upstreamTraffic struct {
	gets     int   // blob GETs, for any blob
	bytes    int64 // the image's blob sizes times their GETs
	onceEach bool  // every blob of the image was fetched exactly once
}

func measureUpstream(up *registrytest.Registry, img image) upstreamTraffic {
	t := upstreamTraffic{gets: up.BlobGetsTotal(), onceEach: true}
	for _, b := range img.blobs {
		n := up.BlobGets(b.Digest)
		t.bytes += int64(n) * b.Size
		if n != 1 {
			t.onceEach = false
		}
	}
	// Any GET of a blob outside the image is traffic the image did not need.
	if t.gets != len(img.blobs) {
		t.onceEach = false
	}
	return t
}
