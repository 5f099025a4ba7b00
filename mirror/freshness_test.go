package mirror_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

const nodeTag = "/v2/library/node/manifests/10"

// manifestRequests counts the upstream's manifest requests, HEAD and GET.
func (e *env) manifestRequests() int {
	return e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindManifest })
}

// expectTag asks the mirror for node:10 and checks that it answers d,
// stale (with a Warning) or not.
func (e *env) expectTag(t *testing.T, method string, want registrytest.Index, stale bool) {
	t.Helper()
	got := e.do(t, method, nodeTag, nil)
	if got.status != http.StatusOK || got.header.Get("Docker-Content-Digest") != want.Descriptor.Digest.String() {
		t.Fatalf("%s node:10 = %d %q: %s; want 200 %s", method, got.status, got.header.Get("Docker-Content-Digest"), got.body, want.Descriptor.Digest)
	}
	if warned := got.header.Get("Warning") != ""; warned != stale {
		t.Fatalf("%s node:10: Warning %q, want stale=%v", method, got.header.Get("Warning"), stale)
	}
	if method == http.MethodGet && string(got.body) != string(want.Bytes) {
		t.Fatalf("GET node:10: body differs from the upstream's index")
	}
}

// pushNodeAgain moves node:10 to a new index upstream.
func (e *env) pushNodeAgain(t *testing.T) registrytest.Index {
	t.Helper()
	ix, err := e.upstream.PushIndex("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 1024, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	e.upstream.Reset()
	return ix
}

func TestTagWithinTTLNeverAsksUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.upstream.Reset()

	for range 5 {
		e.clock.Advance(10 * time.Second)
		e.expectTag(t, http.MethodHead, ix, false)
		e.expectTag(t, http.MethodGet, ix, false)
	}
	if n := len(e.upstream.Requests()); n != 0 {
		t.Fatalf("10 pulls within tag_ttl made %d upstream requests, want 0: %+v", n, e.upstream.Requests())
	}
}

// After tag_ttl an unchanged tag costs one HEAD (free on Docker Hub) and
// no GET, and the confirmation starts a new TTL.
func TestUnchangedTagRevalidatedWithOneHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.upstream.Reset()

	e.clock.Advance(time.Minute)
	e.expectTag(t, http.MethodHead, ix, false)
	e.expectTag(t, http.MethodGet, ix, false)
	e.clock.Advance(59 * time.Second)
	e.expectTag(t, http.MethodHead, ix, false)
	if heads, gets := e.upstream.ManifestHeads("library/node", "10"), e.upstream.ManifestGetsTotal(); heads != 1 || gets != 0 {
		t.Fatalf("revalidation made %d HEADs and %d manifest GETs, want 1 and 0", heads, gets)
	}
	if n := e.manifestRequests(); n != 1 {
		t.Fatalf("%d upstream manifest requests, want 1", n)
	}
}

// A tag moved upstream is served with its new digest after tag_ttl, for one
// HEAD and one GET of the new index (by digest).
func TestMovedTagServedAfterTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute})
	old := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", old)
	moved := e.pushNodeAgain(t)

	e.clock.Advance(30 * time.Second)
	e.expectTag(t, http.MethodHead, old, false) // still within tag_ttl
	e.clock.Advance(30 * time.Second)
	e.expectTag(t, http.MethodHead, moved, false)
	e.expectTag(t, http.MethodGet, moved, false)
	if n := e.upstream.ManifestHeads("library/node", "10"); n != 1 {
		t.Errorf("%d HEADs of the tag, want 1", n)
	}
	if n := e.upstream.ManifestGets("library/node", moved.Descriptor.Digest.String()); n != 1 {
		t.Errorf("%d GETs of the new index, want 1", n)
	}
	if n := e.manifestRequests(); n != 2 {
		t.Errorf("%d upstream manifest requests, want 2: %+v", n, e.upstream.Requests())
	}
}

// Manifests are immutable: once cached, a digest reference is answered
// without fetching anything from the upstream however old it is. (Only the
// repository's visibility is renewed, once an hour: exposure_test.go.)
func TestDigestReferencesNeverAskUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.upstream.Reset()

	e.clock.Advance(365 * 24 * time.Hour)
	e.expectContent(t, "/v2/library/node/manifests/"+ix.Descriptor.Digest.String(), ix.Descriptor, ix.Bytes)
	for _, img := range ix.Images {
		e.expectContent(t, "/v2/library/node/manifests/"+img.Manifest.Digest.String(), img.Manifest, img.ManifestBytes)
	}
	if n := e.manifestRequests(); n != 0 {
		t.Fatalf("digest references made %d upstream manifest requests, want 0", n)
	}
}

// hangAt listens on addr (where the upstream was) and accepts connections
// without ever answering, like an upstream wedged behind a live socket.
func hangAt(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("taking over the upstream's address: %v", err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				break
			}
			held = append(held, conn)
		}
		for _, conn := range held {
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
}

// Whatever way the upstream fails, a cached tag is served stale within
// twice the configured timeout, and an uncached image fails as fast with a
// 5xx (never 429, which would send dockerd to Docker Hub). The elapsed
// times are the one timing bound the mirror promises, so they are checked
// against the real clock.
func TestUpstreamFailureServesCachedTagFast(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name         string
		fail         func(t *testing.T, e *env)
		uncachedWant int
	}{
		{"listener closed", func(t *testing.T, e *env) {
			e.upstream.Close()
		}, http.StatusBadGateway},
		{"500", func(t *testing.T, e *env) {
			e.upstream.FailNext(registrytest.KindManifest, 100, http.StatusInternalServerError)
		}, http.StatusBadGateway},
		{"429 with Retry-After", func(t *testing.T, e *env) {
			e.upstream.FailNext(registrytest.KindManifest, 1, http.StatusTooManyRequests)
		}, http.StatusServiceUnavailable},
		{"accepts and never answers", func(t *testing.T, e *env) {
			addr := e.upstream.Host()
			e.upstream.Close()
			hangAt(t, addr)
		}, http.StatusGatewayTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{
				tagTTL:   time.Minute,
				upstream: upstream.Config{DialTimeout: timeout, ResponseHeaderTimeout: timeout, Timeout: timeout},
			})
			ix := e.pushNode(t, 1, 1024)
			// The uncached image exists upstream: what fails is fetching it.
			if _, err := e.upstream.PushImage("library/other", "1", registrytest.ImageOptions{}); err != nil {
				t.Fatal(err)
			}
			e.pullIndex(t, "library/node", "10", ix)
			e.clock.Advance(2 * time.Minute)
			tt.fail(t, e)

			start := time.Now()
			e.expectTag(t, http.MethodHead, ix, true)
			stale := time.Since(start)
			if stale >= 2*timeout {
				t.Errorf("stale tag served after %v, want under %v", stale, 2*timeout)
			}

			start = time.Now()
			got := e.do(t, http.MethodGet, "/v2/library/other/manifests/1", nil)
			took := time.Since(start)
			if got.status != tt.uncachedWant {
				t.Errorf("uncached image = %d %s, want %d", got.status, got.body, tt.uncachedWant)
			}
			assertOCIError(t, got, "UNAVAILABLE")
			if took >= 2*timeout {
				t.Errorf("uncached image failed after %v, want under %v", took, 2*timeout)
			}
			t.Logf("timeout %v: stale tag served in %v, uncached image failed in %v", timeout, stale, took)
		})
	}
}

// A 429 pauses the upstream until its Retry-After: meanwhile cached tags
// are served stale and uncached ones get a 503, without a request upstream.
func TestRateLimitedUpstreamIsLeftAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.clock.Advance(time.Minute)
	e.upstream.Reset()
	e.upstream.FailNext(registrytest.KindManifest, 1, http.StatusTooManyRequests) // Retry-After: 1

	e.expectTag(t, http.MethodHead, ix, true)
	e.expectTag(t, http.MethodGet, ix, true)
	uncached := e.do(t, http.MethodGet, "/v2/library/other/manifests/1", nil)
	if uncached.status != http.StatusServiceUnavailable {
		t.Fatalf("uncached image while rate limited = %d, want 503", uncached.status)
	}
	if n := len(e.upstream.Requests()); n != 1 {
		t.Fatalf("%d upstream requests while paused, want only the one answered 429: %+v", n, e.upstream.Requests())
	}

	e.clock.Advance(time.Second)
	e.expectTag(t, http.MethodHead, ix, false)
	if n := e.upstream.ManifestHeads("library/node", "10"); n != 2 {
		t.Fatalf("%d HEADs, want 2 (the 429, then one after Retry-After)", n)
	}
}

func TestStaleBeyondStaleIfErrorIsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		staleIfError time.Duration
		servedFor    time.Duration // past tag_ttl
	}{
		{"one hour", time.Hour, 59 * time.Minute},
		{"never", -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{tagTTL: time.Minute, staleIfError: tt.staleIfError})
			ix := e.pushNode(t, 1, 1024)
			e.pullIndex(t, "library/node", "10", ix)
			e.upstream.SetDown(true)

			e.clock.Advance(time.Minute)
			if tt.servedFor > 0 {
				e.clock.Advance(tt.servedFor)
				e.expectTag(t, http.MethodHead, ix, true)
				e.clock.Advance(time.Minute)
			}
			got := e.do(t, http.MethodGet, nodeTag, nil)
			if got.status < 500 || got.status == http.StatusTooManyRequests {
				t.Fatalf("tag past stale_if_error = %d, want 5xx", got.status)
			}
			assertOCIError(t, got, "UNAVAILABLE")
			if !strings.Contains(string(got.body), "stale_if_error") {
				t.Fatalf("refusal %s does not say the cached tag is too old", got.body)
			}
		})
	}
}

// An upstream 404 for a cached tag serves it stale unless the Remote says
// NoStaleOnNotFound; either answer is remembered for NotFoundTTL.
func TestNotFoundForCachedTag(t *testing.T) {
	t.Parallel()
	for _, noStale := range []bool{false, true} {
		name := "serve stale"
		if noStale {
			name = "pass the 404 on"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{tagTTL: time.Minute, remote: mirror.Remote{NoStaleOnNotFound: noStale}})
			ix := e.pushNode(t, 1, 1024)
			e.pullIndex(t, "library/node", "10", ix)
			e.clock.Advance(time.Minute)
			e.upstream.Reset()
			e.upstream.FailNext(registrytest.KindManifest, 1, http.StatusNotFound)

			for range 3 {
				if noStale {
					got := e.do(t, http.MethodGet, nodeTag, nil)
					if got.status != http.StatusNotFound {
						t.Fatalf("GET node:10 = %d, want the upstream's 404", got.status)
					}
					assertOCIError(t, got, "MANIFEST_UNKNOWN")
				} else {
					e.expectTag(t, http.MethodGet, ix, true)
				}
				e.clock.Advance(10 * time.Second)
			}
			if n := e.upstream.ManifestHeads("library/node", "10"); n != 1 {
				t.Fatalf("%d HEADs within not_found_ttl, want 1", n)
			}
			e.clock.Advance(time.Second) // 31s after the 404
			e.expectTag(t, http.MethodHead, ix, false)
			if n := e.upstream.ManifestHeads("library/node", "10"); n != 2 {
				t.Fatalf("%d HEADs after not_found_ttl, want 2", n)
			}
		})
	}
}

// A missing tag or manifest is asked for once per NotFoundTTL, however
// often clients retry it; a negative NotFoundTTL turns that off.
func TestNotFoundRemembered(t *testing.T) {
	t.Parallel()
	missingDigest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name        string
		notFoundTTL time.Duration
		want        [2]int // upstream requests after 3 tries, and after 30s and one more
	}{
		{"default", 0, [2]int{1, 2}},
		{"off", -1, [2]int{3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{remote: mirror.Remote{NotFoundTTL: tt.notFoundTTL}})
			e.pushNode(t, 1, 1024)
			for _, ref := range []struct{ path, reference string }{
				{"/v2/library/node/manifests/nope", "nope"},
				{"/v2/library/node/manifests/" + missingDigest, missingDigest},
			} {
				count := func() int {
					return e.upstream.ManifestHeads("library/node", ref.reference) + e.upstream.ManifestGets("library/node", ref.reference)
				}
				get := func() {
					t.Helper()
					got := e.do(t, http.MethodGet, ref.path, nil)
					if got.status != http.StatusNotFound {
						t.Fatalf("GET %s = %d, want 404", ref.path, got.status)
					}
					assertOCIError(t, got, "MANIFEST_UNKNOWN")
				}
				for range 3 {
					get()
				}
				if n := count(); n != tt.want[0] {
					t.Fatalf("%s: %d upstream requests after 3 tries, want %d", ref.reference, n, tt.want[0])
				}
				e.clock.Advance(mirror.DefaultNotFoundTTL)
				get()
				if n := count(); n != tt.want[1] {
					t.Fatalf("%s: %d upstream requests after not_found_ttl, want %d", ref.reference, n, tt.want[1])
				}
			}
		})
	}
}

// Once the breaker's window holds BreakerMinRequests revalidations, all
// failed, the upstream is skipped:
// cached tags are served stale at once and uncached images fail at once,
// with no request upstream, until the cool-down ends and a probe succeeds.
func TestBreakerOpensAndCloses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{
		tagTTL:   time.Minute,
		upstream: upstream.Config{Retries: -1, BreakerMinRequests: 3, BreakerCooldown: 30 * time.Second},
	})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.clock.Advance(time.Minute)
	e.upstream.Reset()
	e.upstream.SetDown(true)

	for range 3 {
		e.expectTag(t, http.MethodHead, ix, true)
	}
	if n := e.upstream.ManifestHeads("library/node", "10"); n != 3 {
		t.Fatalf("%d HEADs before the breaker opened, want 3", n)
	}
	sent := len(e.upstream.Requests())
	e.expectTag(t, http.MethodHead, ix, true)
	uncached := e.do(t, http.MethodGet, "/v2/library/other/manifests/1", nil)
	if uncached.status < 500 || uncached.status == http.StatusTooManyRequests {
		t.Fatalf("uncached image with the breaker open = %d, want 5xx", uncached.status)
	}
	assertOCIError(t, uncached, "UNAVAILABLE")
	if n := len(e.upstream.Requests()); n != sent {
		t.Fatalf("an open breaker let %d requests through", n-sent)
	}

	e.clock.Advance(29 * time.Second)
	e.expectTag(t, http.MethodHead, ix, true)
	e.upstream.SetDown(false)
	if n := len(e.upstream.Requests()); n != sent {
		t.Fatalf("the breaker let %d requests through before its cool-down ended", n-sent)
	}
	e.clock.Advance(time.Second)
	e.expectTag(t, http.MethodHead, ix, false) // the probe
	e.expectTag(t, http.MethodGet, ix, false)  // fresh again, from the cache
	if n := e.upstream.ManifestHeads("library/node", "10"); n != 4 {
		t.Fatalf("%d HEADs, want 4 (3 failures, then the probe)", n)
	}
}

func TestBackgroundRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, envOptions{tagTTL: time.Minute, remote: mirror.Remote{BackgroundRefresh: true}})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.upstream.Reset()

	e.clock.Advance(40 * time.Second)
	if n := e.m.RefreshDue(ctx); n != 0 || len(e.upstream.Requests()) != 0 {
		t.Fatalf("refreshed %d tags with %d requests 40s into a 1m TTL, want none", n, len(e.upstream.Requests()))
	}
	e.clock.Advance(10 * time.Second) // in the last fifth of the TTL
	if n := e.m.RefreshDue(ctx); n != 1 {
		t.Fatalf("refreshed %d tags, want 1", n)
	}
	if heads, gets := e.upstream.ManifestHeads("library/node", "10"), e.upstream.ManifestGetsTotal(); heads != 1 || gets != 0 {
		t.Fatalf("refresh made %d HEADs and %d GETs, want 1 and 0", heads, gets)
	}

	moved := e.pushNodeAgain(t)
	e.clock.Advance(50 * time.Second)
	if n := e.m.RefreshDue(ctx); n != 1 {
		t.Fatalf("refreshed %d tags, want 1", n)
	}
	e.expectTag(t, http.MethodHead, moved, false)
	if heads, gets := e.upstream.ManifestHeads("library/node", "10"), e.upstream.ManifestGetsTotal(); heads != 1 || gets != 1 {
		t.Fatalf("refresh of a moved tag and a pull made %d HEADs and %d GETs, want 1 and 1", heads, gets)
	}

	// The pull above keeps the tag hot for 3 TTLs; after that it is left alone.
	e.clock.Advance(3 * time.Minute)
	e.upstream.Reset()
	if n := e.m.RefreshDue(ctx); n != 0 || len(e.upstream.Requests()) != 0 {
		t.Fatalf("refreshed %d cold tags", n)
	}
}

func TestBackgroundRefreshIsOffByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tagTTL: time.Minute})
	ix := e.pushNode(t, 1, 1024)
	e.pullIndex(t, "library/node", "10", ix)
	e.clock.Advance(50 * time.Second)
	if n := e.m.RefreshDue(context.Background()); n != 0 {
		t.Fatalf("refreshed %d tags without BackgroundRefresh", n)
	}
}

func TestRunReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{remote: mirror.Remote{BackgroundRefresh: true}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.m.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}
