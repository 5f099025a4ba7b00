package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// These benchmarks run the mirror in-process, wired like `regmirror serve`,
// so that a CPU profile covers the mirror as well as the upstream and the
// client (the daemon has no profiling endpoint). For example:
//
//	go test -run '^$' -bench ColdPull -benchtime 3x -cpuprofile cpu.out ./scripts/bench
//	go tool pprof -top -cum cpu.out

// profileImageMiB keeps a profiling run to a second or two per pull.
const profileImageMiB = 512

func BenchmarkColdPull(b *testing.B) {
	up, img := profileUpstream(b)
	b.SetBytes(img.size)
	for b.Loop() {
		url := startInProcessMirror(b, up.URL())
		if _, err := pullOnce(b.Context(), newPuller(url, 3), img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWarmPull(b *testing.B) {
	up, img := profileUpstream(b)
	url := startInProcessMirror(b, up.URL())
	if _, err := pullOnce(b.Context(), newPuller(url, 3), img); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(img.size)
	for b.Loop() {
		if _, err := pullOnce(b.Context(), newPuller(url, 3), img); err != nil {
			b.Fatal(err)
		}
	}
}

func profileUpstream(b *testing.B) (*registrytest.Registry, image) {
	b.Helper()
	up := registrytest.New(b, registrytest.Options{
		Username: upstreamUser,
		Password: upstreamPassword,
		Private:  []string{"library/*"},
	})
	img, err := pushImage(up, "library/big", profileImageMiB, 4, 1)
	if err != nil {
		b.Fatal(err)
	}
	return up, img
}

// startInProcessMirror serves a fresh cache through the mirror, with the
// upstream as docker.io and its credentials, and returns the mirror's URL.
func startInProcessMirror(b *testing.B, upstreamURL string) string {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store, err := cache.Open(ctx, cache.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	keys, err := credentials.New(credentials.Config{Static: map[string]credentials.Static{
		"docker.io": {Username: upstreamUser, Password: upstreamPassword},
	}})
	if err != nil {
		b.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: upstreamURL}, keys, upstream.Options{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := mirror.New(mirror.Options{Cache: store, Remotes: []mirror.Remote{{Host: "docker.io", Upstream: client}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(m)
	b.Cleanup(func() {
		srv.Close()
		client.Close()
		cancel()
		<-done
		store.Close()
	})
	return srv.URL
}
