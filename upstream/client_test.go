package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// mirrorUpstream is mirror.Upstream, copied because upstream must not
// import mirror. Keep the two in sync.
type mirrorUpstream interface {
	HeadManifest(ctx context.Context, repo, reference string) (ocispec.Descriptor, error)
	GetManifest(ctx context.Context, repo, reference string) (mediaType string, data []byte, err error)
	GetBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (body io.ReadCloser, start, size int64, err error)
	ListTags(ctx context.Context, repo string, nextPage func() error) ([]string, error)
	Referrers(ctx context.Context, repo string, subject digest.Digest, nextPage func() error) ([]ocispec.Descriptor, error)
}

var _ mirrorUpstream = (*Client)(nil)

const (
	user     = "alice"
	password = "correct horse battery staple"
)

// sleeps records the backoffs a client waited, without waiting.
type sleeps struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays = append(s.delays, d)
	return nil
}

func (s *sleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delays)
}

// staticKeys is a keychain with the test account for host.
func staticKeys(t *testing.T, host, pass string) authn.Keychain {
	t.Helper()
	k, err := credentials.New(credentials.Config{Static: map[string]credentials.Static{
		host: {Username: user, Password: pass},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newClient makes a client for reg whose retries do not sleep.
func newClient(t *testing.T, reg *registrytest.Registry, cfg Config, keys authn.Keychain, opts Options) (*Client, *sleeps) {
	t.Helper()
	cfg.URL = reg.URL()
	c, err := New(cfg, keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &sleeps{}
	c.sleep = s.sleep
	return c, s
}

// privateRegistry serves a private index at private/node:10.
func privateRegistry(t *testing.T, opts registrytest.Options) (*registrytest.Registry, registrytest.Index) {
	t.Helper()
	opts.Username, opts.Password = user, password
	opts.Private = []string{"private/*"}
	reg := registrytest.New(t, opts)
	ix, err := reg.PushIndex("private/node", "10", registrytest.ImageOptions{Layers: 3, LayerSize: 32 << 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return reg, ix
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *upstream.Error", err, err)
	}
	return e
}

func readBlob(t *testing.T, c *Client, repo string, desc ocispec.Descriptor) {
	t.Helper()
	rc, _, size, err := c.GetBlob(context.Background(), repo, desc.Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if size != desc.Size || digest.FromBytes(data) != desc.Digest {
		t.Fatalf("blob %s: size %d digest %s, want %d", desc.Digest, size, digest.FromBytes(data), desc.Size)
	}
}

// TestColdPullReusesOneToken fetches an index, both platform manifests and
// every blob of a private repository, concurrently and cold, and checks
// that one token served them all.
func TestColdPullReusesOneToken(t *testing.T) {
	t.Parallel()
	reg, ix := privateRegistry(t, registrytest.Options{})
	// Hub-style: credentials are stored for the configured host, which is
	// not the host the client connects to.
	c, _ := newClient(t, reg, Config{Host: "docker.io"}, staticKeys(t, "docker.io", password), Options{})
	ctx := context.Background()

	desc, err := c.HeadManifest(ctx, "private/node", "10")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != ix.Descriptor.Digest || desc.Size != ix.Descriptor.Size || desc.MediaType != ix.Descriptor.MediaType {
		t.Fatalf("HeadManifest = %+v, want %+v", desc, ix.Descriptor)
	}
	mediaType, data, err := c.GetManifest(ctx, "private/node", desc.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if mediaType != registrytest.MediaTypeDockerManifestList || !bytes.Equal(data, ix.Bytes) {
		t.Fatalf("GetManifest(index) = %s, %d bytes", mediaType, len(data))
	}

	var wg sync.WaitGroup
	for _, img := range ix.Images {
		wg.Go(func() {
			if _, _, err := c.GetManifest(ctx, "private/node", img.Manifest.Digest.String()); err != nil {
				t.Error(err)
			}
		})
		for _, blob := range img.Blobs() {
			wg.Go(func() { readBlob(t, c, "private/node", blob) })
		}
	}
	wg.Wait()

	if got := reg.TokenRequests("repository:private/node:pull"); got != 1 {
		t.Errorf("token requests = %d, want 1 (all: %v)", got, reg.TokenScopes())
	}
	if got := reg.Pings(); got != 1 {
		t.Errorf("pings = %d, want 1", got)
	}
	if got := reg.ManifestGets("private/node", "10"); got != 0 {
		t.Errorf("HeadManifest issued %d GETs of the tag, want 0", got)
	}
	for _, blob := range ix.Blobs() {
		if got := reg.BlobGets(blob.Digest); got != 1 {
			t.Errorf("blob %s fetched %d times, want 1", blob.Digest, got)
		}
	}
}

func TestTokenExpiryRefreshes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg, ix := privateRegistry(t, registrytest.Options{TokenTTL: time.Minute, Now: clock})
	c, sleeps := newClient(t, reg, Config{Host: "docker.io"}, staticKeys(t, "docker.io", password), Options{})

	for range 2 {
		if _, err := c.HeadManifest(context.Background(), "private/node", "10"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	readBlob(t, c, "private/node", ix.Images[0].Layers[0])

	if got := reg.TokenRequests("repository:private/node:pull"); got != 2 {
		t.Errorf("token requests = %d, want 2: one at first use, one after expiry", got)
	}
	if len(sleeps.get()) != 0 {
		t.Errorf("an expired token caused retries %v; the bearer transport should refresh it", sleeps.get())
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	reg, _ := privateRegistry(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	missing := digest.FromString("missing")
	anonymous, _ := newClient(t, reg, Config{}, nil, Options{})
	wrongPassword, _ := newClient(t, reg, Config{}, staticKeys(t, reg.Host(), "wrong"), Options{})

	tests := []struct {
		name       string
		call       func() error
		wantStatus int
		wantCode   string
	}{
		{"anonymous on a private repository", func() error {
			_, _, err := anonymous.GetManifest(context.Background(), "private/node", "10")
			return err
		}, 401, "UNAUTHORIZED"},
		{"anonymous HEAD on a private repository", func() error {
			_, err := anonymous.HeadManifest(context.Background(), "private/node", "10")
			return err
		}, 401, "UNAUTHORIZED"},
		{"wrong password", func() error {
			_, _, err := wrongPassword.GetManifest(context.Background(), "private/node", "10")
			return err
		}, 401, "UNAUTHORIZED"},
		{"unknown tag", func() error {
			_, _, err := anonymous.GetManifest(context.Background(), "library/alpine", "nope")
			return err
		}, 404, "MANIFEST_UNKNOWN"},
		{"unknown tag, HEAD", func() error {
			_, err := anonymous.HeadManifest(context.Background(), "library/alpine", "nope")
			return err
		}, 404, "MANIFEST_UNKNOWN"},
		{"unknown blob", func() error {
			_, _, _, err := anonymous.GetBlob(context.Background(), "library/alpine", missing, 0)
			return err
		}, 404, "BLOB_UNKNOWN"},
		{"unknown repository tags", func() error {
			_, err := anonymous.ListTags(context.Background(), "library/nothing", nil)
			return err
		}, 404, "NAME_UNKNOWN"},
		{"invalid repository name", func() error {
			_, _, err := anonymous.GetManifest(context.Background(), "../etc", "10")
			return err
		}, 0, "NAME_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := asError(t, tt.call())
			if e.HTTPStatus() != tt.wantStatus || e.Code != tt.wantCode || e.Temporary() {
				t.Errorf("got status %d code %s temporary %v (%v), want %d %s permanent",
					e.HTTPStatus(), e.Code, e.Temporary(), e, tt.wantStatus, tt.wantCode)
			}
			if e.Host != reg.Host() {
				t.Errorf("Host = %q, want %q", e.Host, reg.Host())
			}
			if strings.Contains(e.Error(), password) || strings.Contains(e.Error(), "wrong") && tt.name == "wrong password" {
				t.Errorf("error leaks a secret: %v", e)
			}
		})
	}
}

func TestNetworkErrorIsTemporary(t *testing.T) {
	t.Parallel()
	reg, err := registrytest.Start(registrytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg.Close()
	c, sleeps := newClient(t, reg, Config{}, nil, Options{})
	_, _, err = c.GetManifest(context.Background(), "library/alpine", "3")
	e := asError(t, err)
	if e.HTTPStatus() != 0 || !e.Temporary() {
		t.Errorf("got status %d temporary %v, want 0 and temporary: %v", e.HTTPStatus(), e.Temporary(), e)
	}
	if got := sleeps.get(); !slices.Equal(got, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}) {
		t.Errorf("backoffs = %v, want [100ms 200ms]", got)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		kind       registrytest.Kind
		failures   int
		status     int
		wantErr    int // 0: success
		wantTries  int
		wantSleeps int // -1: not checked
	}{
		{"503 twice then success", registrytest.KindManifest, 2, 503, 0, 3, 2},
		// The upstream said when to come back (see TestRateLimitPausesUpstream).
		{"429 is not retried", registrytest.KindManifest, 1, 429, 429, 1, 0},
		{"503 beyond the retries", registrytest.KindManifest, 3, 503, 503, 3, 2},
		{"404 is not retried", registrytest.KindManifest, 1, 404, 404, 1, 0},
		// ggcr races two pings for an http registry, so one failed ping
		// never reaches the retry loop; only success is certain.
		{"failed ping", registrytest.KindPing, 1, 502, 0, 1, -1},
		{"failed token request is retried", registrytest.KindToken, 1, 503, 0, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := registrytest.New(t, registrytest.Options{})
			img, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c, sleeps := newClient(t, reg, Config{}, nil, Options{})
			reg.FailNext(tt.kind, tt.failures, tt.status)

			_, data, err := c.GetManifest(context.Background(), "library/alpine", "3")
			switch {
			case tt.wantErr == 0 && err != nil:
				t.Fatal(err)
			case tt.wantErr == 0 && !bytes.Equal(data, img.ManifestBytes):
				t.Error("wrong manifest bytes")
			case tt.wantErr != 0 && asError(t, err).HTTPStatus() != tt.wantErr:
				t.Errorf("error %v, want status %d", err, tt.wantErr)
			}
			if got := reg.ManifestGets("library/alpine", "3"); got != tt.wantTries {
				t.Errorf("manifest GETs = %d, want %d", got, tt.wantTries)
			}
			if got := len(sleeps.get()); tt.wantSleeps >= 0 && got != tt.wantSleeps {
				t.Errorf("retries = %d, want %d", got, tt.wantSleeps)
			}
		})
	}
}

func TestManifestVerification(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	ix, err := reg.PushIndex("library/node", "10", registrytest.ImageOptions{OCI: true})
	if err != nil {
		t.Fatal(err)
	}
	index := ix.Descriptor.Digest
	c, _ := newClient(t, reg, Config{}, nil, Options{})
	ctx := context.Background()

	for _, ref := range []string{"10", index.String()} {
		reg.InjectFault(index, registrytest.Fault{Kind: registrytest.Corrupt})
		_, _, err := c.GetManifest(ctx, "library/node", ref)
		if e := asError(t, err); !errors.Is(err, ErrDigestMismatch) || !e.Temporary() || e.Code != "DIGEST_INVALID" {
			t.Errorf("corrupt manifest by %s: %v, want a temporary digest mismatch", ref, err)
		}
	}

	// A one-off corruption is healed by a retry.
	reg.InjectFault(index, registrytest.Fault{Kind: registrytest.Corrupt, Times: 1})
	mediaType, data, err := c.GetManifest(ctx, "library/node", "10")
	if err != nil || !bytes.Equal(data, ix.Bytes) || mediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("after a one-off corruption: %s, %v", mediaType, err)
	}
	reg.ClearFault(index)

	// Reference digests must be sha256 or sha512; other algorithms are refused.
	sha384 := digest.SHA384.FromBytes(ix.Bytes)
	if _, _, err := c.GetManifest(ctx, "library/node", sha384.String()); err == nil {
		t.Error("a sha384 reference was accepted")
	}
}

func TestManifestSizeCap(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	manifestOfSize := func(n int) []byte {
		head := `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","pad":"`
		tail := `"}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	for tag, size := range map[string]int{"at-limit": MaxManifestSize, "over-limit": MaxManifestSize + 1} {
		if _, err := reg.PutManifest("library/big", tag, ocispec.MediaTypeImageManifest, manifestOfSize(size)); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newClient(t, reg, Config{}, nil, Options{})
	if _, data, err := c.GetManifest(context.Background(), "library/big", "at-limit"); err != nil || len(data) != MaxManifestSize {
		t.Errorf("manifest of exactly %d bytes: %d bytes, %v", MaxManifestSize, len(data), err)
	}
	_, _, err := c.GetManifest(context.Background(), "library/big", "over-limit")
	if e := asError(t, err); !errors.Is(err, ErrManifestTooLarge) || e.Temporary() {
		t.Errorf("oversized manifest: %v, want a permanent ErrManifestTooLarge", err)
	}
}

func TestBlobRedirectDropsAuthorization(t *testing.T) {
	t.Parallel()
	reg, ix := privateRegistry(t, registrytest.Options{RedirectBlobs: true})
	c, _ := newClient(t, reg, Config{}, staticKeys(t, reg.Host(), password), Options{})
	for _, blob := range ix.Images[0].Blobs() {
		readBlob(t, c, "private/node", blob)
	}
	cdn := reg.CDNRequests()
	if len(cdn) != len(ix.Images[0].Blobs()) {
		t.Fatalf("CDN saw %d requests, want %d", len(cdn), len(ix.Images[0].Blobs()))
	}
	for _, r := range cdn {
		if auth := r.Header.Get("Authorization"); auth != "" {
			t.Errorf("CDN request %s received Authorization %q", r.Path, auth)
		}
	}
	authorized := reg.CountRequests(func(r registrytest.Request) bool {
		return r.Kind == registrytest.KindBlob && r.Authorization && r.Status == http.StatusTemporaryRedirect
	})
	if authorized != len(cdn) {
		t.Errorf("%d authorized, redirected registry blob GETs, want %d", authorized, len(cdn))
	}
}

func TestBlobTruncatedMidBody(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	img, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{LayerSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	reg.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Truncate})
	c, _ := newClient(t, reg, Config{}, nil, Options{})
	rc, _, size, err := c.GetBlob(context.Background(), "library/alpine", layer.Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if size != layer.Size {
		t.Errorf("size %d, want %d", size, layer.Size)
	}
	_, err = io.ReadAll(rc)
	if e := asError(t, err); !errors.Is(err, io.ErrUnexpectedEOF) || !e.Temporary() {
		t.Errorf("truncated body: %v, want a temporary unexpected EOF", err)
	}
}

func TestListTagsFollowsLinks(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{TagsPageSize: 2})
	want := []string{"1", "2", "3", "4", "5"}
	for _, tag := range want {
		if _, err := reg.PushImage("library/busybox", tag, registrytest.ImageOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newClient(t, reg, Config{}, nil, Options{})
	got, err := c.ListTags(context.Background(), "library/busybox", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("tags %v, want %v", got, want)
	}
	pages := reg.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindTags })
	if pages != 3 {
		t.Errorf("%d tag list requests, want 3 pages", pages)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	prom := prometheus.NewRegistry()
	c, _ := newClient(t, reg, Config{Host: "docker.io"}, nil, Options{Registerer: prom})
	// A second client on the same registerer shares the collectors.
	if _, err := New(Config{Host: "ghcr.io", URL: reg.URL()}, nil, Options{Registerer: prom}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadManifest(context.Background(), "library/alpine", "3"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadManifest(context.Background(), "library/alpine", "missing"); err == nil {
		t.Fatal("missing tag resolved")
	}

	families, err := prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := []string{}
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"regmirror_upstream_requests_total{code=2xx,method=HEAD,upstream=docker.io}":  1,
		"regmirror_upstream_requests_total{code=4xx,method=HEAD,upstream=docker.io}":  1,
		"regmirror_upstream_requests_total{code=2xx,method=GET,upstream=docker.io}":   1, // the token
		"regmirror_upstream_errors_total{operation=head_manifest,upstream=docker.io}": 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if got["regmirror_upstream_request_duration_seconds{method=HEAD,upstream=docker.io}"] != 2 {
		t.Errorf("duration histogram missing HEAD samples: %v", got)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		wantErr bool
	}{
		{"https://registry-1.docker.io", false},
		{"http://127.0.0.1:5000/", false},
		{"ftp://example.com", true},
		{"https://", true},
		{"https://user:hunter2@example.com", true},
		{"https://example.com/v2/", true},
		{"https://example.com?x=1", true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			_, err := New(Config{Host: "example.com", URL: tt.url}, nil, Options{})
			if (err != nil) != tt.wantErr {
				t.Errorf("New(%q) error %v, wantErr %v", tt.url, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the URL's password: %v", err)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Host: "docker.io", Op: "get manifest", Repo: "library/node", Ref: "10", StatusCode: 404, Code: "MANIFEST_UNKNOWN", Message: "manifest unknown"},
			"upstream docker.io: get manifest library/node 10: 404 MANIFEST_UNKNOWN: manifest unknown"},
		{&Error{Host: "docker.io", Op: "list tags", Repo: "library/node", Err: fmt.Errorf("dial tcp: connection refused")},
			"upstream docker.io: list tags library/node: dial tcp: connection refused"},
		{&Error{Host: "ghcr.io", Op: "get blob", Repo: "a/b", Ref: "sha256:00", StatusCode: 502},
			"upstream ghcr.io: get blob a/b sha256:00: 502 Bad Gateway"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// stripHeaders is a base transport that removes response headers, playing
// a registry that omits them.
type stripHeaders struct {
	headers []string
}

func (s stripHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		for _, h := range s.headers {
			resp.Header.Del(h)
		}
	}
	return resp, err
}

func TestMissingHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		strip         []string
		wantHeadGets  int // GETs HeadManifest needed
		wantMediaType string
	}{
		{"complete", nil, 0, ocispec.MediaTypeImageIndex},
		{"no digest", []string{"Docker-Content-Digest"}, 1, ocispec.MediaTypeImageIndex},
		{"no content type", []string{"Content-Type"}, 1, ocispec.MediaTypeImageIndex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := registrytest.New(t, registrytest.Options{})
			ix, err := reg.PushIndex("library/node", "10", registrytest.ImageOptions{OCI: true})
			if err != nil {
				t.Fatal(err)
			}
			c, _ := newClient(t, reg, Config{}, nil, Options{Transport: stripHeaders{tt.strip}})

			desc, err := c.HeadManifest(context.Background(), "library/node", "10")
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != ix.Descriptor.Digest || desc.Size != ix.Descriptor.Size || desc.MediaType != tt.wantMediaType {
				t.Errorf("HeadManifest = %+v, want %s %d %s", desc, ix.Descriptor.Digest, ix.Descriptor.Size, tt.wantMediaType)
			}
			if got := reg.ManifestGets("library/node", "10"); got != tt.wantHeadGets {
				t.Errorf("HeadManifest made %d GETs, want %d", got, tt.wantHeadGets)
			}
			mediaType, data, err := c.GetManifest(context.Background(), "library/node", "10")
			if err != nil || mediaType != tt.wantMediaType || !bytes.Equal(data, ix.Bytes) {
				t.Errorf("GetManifest = %s, %v; want %s and the index bytes", mediaType, err, tt.wantMediaType)
			}
		})
	}
}
