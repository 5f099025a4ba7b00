package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// BenchmarkInventory100k measures what the inventory and eviction cost with
// a large cache: 100,000 blobs in 10,000 repositories of one tag each (the
// cache written directly, untimed). It reports the first catalog page and
// the first repository listing (each reads the whole index), the same
// requests again (the snapshot reused), and one eviction pass down to half
// the usage through the running daemon's admin socket. Run it with
// -benchtime=1x.
func BenchmarkInventory100k(b *testing.B) {
	const blobs, repos, layers = 100_000, 10_000, 10 // every blob named by one manifest
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		writeInventory(b, ctx, dir, blobs, repos, layers)
		cfg := Config{DataDir: dir, ListedUpstreamsOnly: true,
			Upstreams: []UpstreamConfig{{Host: "docker.io", URL: "http://127.0.0.1:9"}}}
		base := startDaemonLogging(b, cfg, slog.New(slog.DiscardHandler))
		b.StartTimer()

		catalogFirst := timeGet(b, base+"/v2/_catalog?n=1000")
		apiFirst := timeGet(b, base+"/api/v1/repositories")
		catalog := timeGet(b, base+"/v2/_catalog?n=1000")
		api := timeGet(b, base+"/api/v1/repositories")
		start := time.Now()
		st := cliJSON[admin.StatsReport](b, "cache", "stats", "--data-dir", dir)
		if _, _, err := runCLI(b, "cache", "prune", "--data-dir", dir, "--max-size", fmt.Sprint(st.Bytes/2)); err != nil {
			b.Fatalf("eviction pass: %v", err)
		}
		evict := time.Since(start)

		b.ReportMetric(float64(catalogFirst.Milliseconds()), "catalog-first-ms")
		b.ReportMetric(float64(catalog.Microseconds())/1000, "catalog-ms")
		b.ReportMetric(float64(apiFirst.Milliseconds()), "api-first-ms")
		b.ReportMetric(float64(api.Microseconds())/1000, "api-ms")
		b.ReportMetric(evict.Seconds(), "evict-pass-s")
	}
}

// writeInventory writes n synthetic blobs and repos repositories, each with
// a manifest naming layers of the blobs and a tag.
func writeInventory(b *testing.B, ctx context.Context, dir string, n, repos, layers int) {
	b.Helper()
	if err := cache.WriteSynthetic(ctx, dir, "docker.io/bench/all", n); err != nil {
		b.Fatal(err)
	}
	store, err := cache.Open(ctx, cache.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	for r := range repos {
		m := ocispec.Manifest{MediaType: registrytest.MediaTypeDockerManifest,
			Config: ocispec.Descriptor{MediaType: registrytest.MediaTypeDockerConfig, Digest: syntheticBlob(r * layers), Size: 8}}
		m.SchemaVersion = 2
		for l := range layers {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: registrytest.MediaTypeDockerLayer, Digest: syntheticBlob(r*layers + l), Size: 8})
		}
		data, err := json.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		repo := fmt.Sprintf("docker.io/team%d/app%d", r/100, r)
		d := digest.SHA256.FromBytes(data)
		if err := store.PutManifestAs(ctx, repo, d, registrytest.MediaTypeDockerManifest, data); err != nil {
			b.Fatal(err)
		}
		if err := store.PutTag(ctx, repo, "1", d, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// syntheticBlob is the digest of cache.WriteSynthetic's blob i.
func syntheticBlob(i int) digest.Digest {
	var content [8]byte
	binary.LittleEndian.PutUint64(content[:], uint64(i))
	return digest.FromBytes(content[:])
}

func timeGet(b *testing.B, url string) time.Duration {
	b.Helper()
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s = %d, %v", url, resp.StatusCode, err)
	}
	return time.Since(start)
}
