package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/statuspage"
	"github.com/regmirror/regmirror/internal/testnet"
)

// After a cold and a warm pull, /status.json shows a user of status.users
// what was pulled, and its cache section is exactly what `regmirror cache
// stats --json` prints.
func TestStatusJSONAfterPullsMatchesCacheStats(t *testing.T) {
	t.Parallel()
	hub, cfg := startHub(t)
	withUsers(t, &cfg, "alice")
	cfg.Status.Users = []string{"alice"}
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 2, LayerSize: 8 << 10, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := newUserClient(t, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)), "alice")
	size := c.pullImage("library/node", "10", img)
	c.pullImage("library/node", "10", img)

	status := c.status()
	if !status.Detail {
		t.Fatal("a user of status.users got no detail")
	}
	blobs := len(img.Blobs())
	got := status.Cache
	if got.Bytes != size || got.Blobs != blobs || got.Manifests != 1 || got.Tags != 1 {
		t.Errorf("cache: %d bytes, %d blobs, %d manifests, %d tags; want %d, %d, 1, 1",
			got.Bytes, got.Blobs, got.Manifests, got.Tags, size, blobs)
	}
	wantTop := []admin.RepoUsage{{Repo: "docker.io/library/node", Bytes: size, Blobs: blobs}}
	if !slices.Equal(got.TopRepos, wantTop) {
		t.Errorf("top repositories = %+v, want %+v", got.TopRepos, wantTop)
	}
	// Cold: tag miss, manifest hit (the tag's revalidation fetched it),
	// blob misses. Warm: all hits.
	wantHits, wantMisses := int64(1+1+blobs+1), int64(1+blobs)
	if tr := got.Traffic; tr == nil || tr.Hits != wantHits || tr.Misses != wantMisses ||
		tr.CacheBytes != size || tr.UpstreamBytes != size || tr.HitRatio != float64(wantHits)/float64(wantHits+wantMisses) {
		t.Errorf("traffic = %+v, want %d hits, %d misses, %d bytes each from cache and upstream", tr, wantHits, wantMisses, size)
	}

	if n := len(status.RecentPulls); n != 2*(2+blobs) {
		t.Fatalf("%d recent pulls, want %d", n, 2*(2+blobs))
	}
	newest, oldest := status.RecentPulls[0], status.RecentPulls[len(status.RecentPulls)-1]
	lastLayer := img.Layers[len(img.Layers)-1]
	if newest.Repository != "docker.io/library/node" || newest.Reference != lastLayer.Digest.String() ||
		newest.Cache != "hit" || newest.Bytes != lastLayer.Size || newest.Kind != "blob" {
		t.Errorf("newest pull = %+v, want the warm pull's last layer, a hit", newest)
	}
	if oldest.Method != http.MethodHead || oldest.Reference != "10" || oldest.Cache != "miss" {
		t.Errorf("oldest pull = %+v, want the cold HEAD of tag 10, a miss", oldest)
	}
	if len(status.Upstreams) == 0 || status.Upstreams[0].Host != "docker.io" || status.Upstreams[0].State != "up" ||
		status.Upstreams[0].Requests == 0 || status.Upstreams[0].FailedRequests != 0 {
		t.Errorf("upstreams = %+v, want docker.io first, up, with requests and no failures", status.Upstreams)
	}

	// The CLI reaches the daemon through its admin socket.
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	if err := runAppLocked(context.Background(), app, []string{"regmirror", "cache", "stats", "--json", "--data-dir", cfg.DataDir}); err != nil {
		t.Fatalf("cache stats: %v\n%s", err, out.String())
	}
	var cli admin.StatsReport
	if err := json.Unmarshal(out.Bytes(), &cli); err != nil {
		t.Fatalf("cache stats --json printed %q: %v", out.String(), err)
	}
	page := status.Cache
	// Each report's traffic is read from the same counters; only the
	// moment the daemon's two readers started differs.
	if cli.Traffic == nil || page.Traffic == nil {
		t.Fatalf("traffic missing: cli %+v, page %+v", cli.Traffic, page.Traffic)
	}
	cli.Traffic.Since, page.Traffic.Since = time.Time{}, time.Time{}
	cliJSON, _ := json.Marshal(cli)
	pageJSON, _ := json.Marshal(page)
	if !bytes.Equal(cliJSON, pageJSON) {
		t.Errorf("status page and cache stats disagree:\npage %s\ncli  %s", pageJSON, cliJSON)
	}
}

// newUserClient is newClient logged in as user (see withUsers): every
// request carries the user's Basic credentials.
func newUserClient(t *testing.T, base, user string) *client {
	c := newClient(t, base)
	c.http.Transport = withAuthorization{basicAuth(user), c.http.Transport}
	return c
}

// withAuthorization sets an Authorization header on every request.
type withAuthorization struct {
	value string
	next  http.RoundTripper
}

func (a withAuthorization) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", a.value)
	return a.next.RoundTrip(r)
}

func (c *client) status() statuspage.Report {
	c.t.Helper()
	code, body := c.do(http.MethodGet, "/status.json")
	if code != http.StatusOK {
		c.t.Fatalf("GET /status.json = %d: %s", code, body)
	}
	var r statuspage.Report
	if err := json.Unmarshal(body, &r); err != nil {
		c.t.Fatalf("status.json: %v", err)
	}
	return r
}

func TestOperatorEndpoints(t *testing.T) {
	t.Parallel()
	_, cfg := startHub(t)
	cfg.MetricsListen = testnet.FreeAddr(t)
	c := newClient(t, startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler)))
	metricsOnly := newClient(t, "http://"+cfg.MetricsListen)
	waitFor(t, metricsOnly.base+"/healthz")

	tests := []struct {
		name        string
		c           *client
		path        string
		wantStatus  int
		wantType    string
		wantContain string
	}{
		{"healthz", c, "/healthz", http.StatusOK, "text/plain", "ok"},
		{"readyz", c, "/readyz", http.StatusOK, "text/plain", "ready"},
		{"status page", c, "/", http.StatusOK, "text/html", "<title>regmirror status</title>"},
		{"status json", c, "/status.json", http.StatusOK, "application/json", `"detail":false`},
		{"status login without status users", c, "/?login", http.StatusNotFound, "text/plain", "regmirror cache stats"},
		{"metrics", c, "/metrics", http.StatusOK, "text/plain", "regmirror_cache_size_bytes"},
		{"unknown path is not the page", c, "/nope", http.StatusNotFound, "", ""},
		{"metrics listener: metrics", metricsOnly, "/metrics", http.StatusOK, "text/plain", "regmirror_cache_blobs"},
		{"metrics listener: readyz", metricsOnly, "/readyz", http.StatusOK, "text/plain", "ready"},
		{"metrics listener: no status page", metricsOnly, "/", http.StatusNotFound, "", ""},
		{"metrics listener: no registry", metricsOnly, "/v2/", http.StatusNotFound, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tt.c.base+tt.path, nil)
			resp, err := tt.c.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.wantType)
			}
			if !strings.Contains(body.String(), tt.wantContain) {
				t.Errorf("body does not contain %q", tt.wantContain)
			}
		})
	}
}

type fakeReadyStore struct{ err error }

func (f fakeReadyStore) Ready(context.Context) error { return f.err }

func TestReadiness(t *testing.T) {
	t.Parallel()
	disk := func(free int64, err error) func(string) (int64, error) {
		return func(string) (int64, error) { return free, err }
	}
	tests := []struct {
		name      string
		store     error
		minFree   int64
		freeBytes func(string) (int64, error)
		wantErr   string // "" means ready
	}{
		{name: "ready", minFree: 100, freeBytes: disk(101, nil)},
		{name: "exactly at the floor", minFree: 100, freeBytes: disk(100, nil)},
		{name: "below the floor", minFree: 100, freeBytes: disk(99, nil), wantErr: "below the floor"},
		{name: "no floor", minFree: 0, freeBytes: disk(0, nil)},
		{name: "free space unmeasurable here", minFree: 100, freeBytes: disk(0, errors.ErrUnsupported)},
		{name: "statfs fails", minFree: 100, freeBytes: disk(0, errors.New("EIO")), wantErr: "EIO"},
		{name: "cache closed", store: cache.ErrClosed, minFree: 100, freeBytes: disk(1000, nil), wantErr: "cache closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rd := readiness{store: fakeReadyStore{tt.store}, dataDir: "/data", minFree: tt.minFree, freeBytes: tt.freeBytes}
			err := rd.check(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("check = %v, want ready", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("check = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadyFloorIsHalfOfMinFreeDisk(t *testing.T) {
	t.Parallel()
	off := Size(0)
	for _, tt := range []struct {
		cfg  CacheConfig
		want int64
	}{
		{CacheConfig{}, int64(defaultMinFreeDisk) / 2},
		{CacheConfig{MinFreeDisk: &off}, 0},
	} {
		if got := readyFloor(tt.cfg); got != tt.want {
			t.Errorf("readyFloor(%+v) = %d, want %d", tt.cfg, got, tt.want)
		}
	}
}

// Pulls of a private image by a logged-in user show on the status page
// only to the users of status.users: an anonymous client and a user who
// is not listed see aggregate numbers, and no repository, tag or digest.
func TestStatusNamesNothingToAnonymousOrUnlistedClients(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"acme/*"}})
	img, err := hub.PushImage("acme/payroll-api", "v9-secret", registrytest.ImageOptions{Layers: 2, LayerSize: 8 << 10, Seed: 91})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: t.TempDir(), Upstreams: []UpstreamConfig{{
		Host: "docker.io", URL: hub.URL(), Username: hubUser, Password: hubPassword, // nothing exposed
	}}}
	withUsers(t, &cfg, "alice", "bob")
	cfg.Status.Users = []string{"alice"}
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	newUserClient(t, base, "bob").pullImage("acme/payroll-api", "v9-secret", img)

	secrets := []string{"payroll-api", "v9-secret", img.Manifest.Digest.Encoded()}
	for _, b := range img.Blobs() {
		secrets = append(secrets, b.Digest.Encoded())
	}
	tests := []struct {
		name       string
		c          *client
		wantDetail bool
	}{
		{"anonymous", newClient(t, base), false},
		{"user not in status.users", newUserClient(t, base, "bob"), false},
		{"user in status.users", newUserClient(t, base, "alice"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/status.json", "/"} {
				status, body := tt.c.do(http.MethodGet, path)
				if status != http.StatusOK {
					t.Fatalf("GET %s = %d", path, status)
				}
				for _, s := range secrets {
					if shown := strings.Contains(string(body), s); shown != (tt.wantDetail && path == "/status.json") {
						t.Errorf("GET %s shows %q: %v, want %v", path, s, shown, !shown)
					}
				}
			}
			r := tt.c.status()
			if r.Detail != tt.wantDetail {
				t.Errorf("detail = %v, want %v", r.Detail, tt.wantDetail)
			}
			// The aggregate numbers are there for everyone.
			if r.Cache.Blobs != len(img.Blobs()) || r.Cache.Manifests != 1 || r.Cache.Traffic == nil || r.Cache.Traffic.Misses == 0 ||
				len(r.Upstreams) == 0 || r.Upstreams[0].Host != "docker.io" || r.Upstreams[0].Requests == 0 {
				t.Errorf("aggregate numbers missing: cache %+v, upstreams %+v", r.Cache, r.Upstreams)
			}
		})
	}
}

// /?login asks for the credentials of a user of status.users, refuses
// other users, and serves the page to the listed ones.
func TestStatusLogin(t *testing.T) {
	t.Parallel()
	_, cfg := startHub(t)
	withUsers(t, &cfg, "alice", "bob")
	cfg.Status.Users = []string{"alice"}
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	tests := []struct {
		name      string
		c         *client
		want      int
		challenge bool
	}{
		{"anonymous", newClient(t, base), http.StatusUnauthorized, true},
		{"wrong password", &client{t: t, base: base, http: &http.Client{Transport: withAuthorization{"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:nope")), http.DefaultTransport}}}, http.StatusUnauthorized, true},
		{"user not in status.users", newUserClient(t, base, "bob"), http.StatusForbidden, false},
		{"user in status.users", newUserClient(t, base, "alice"), http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, base+"/?login", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tt.c.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET /?login = %d, want %d", resp.StatusCode, tt.want)
			}
			if got := strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic "); got != tt.challenge {
				t.Errorf("Basic challenge: %v, want %v", got, tt.challenge)
			}
		})
	}
}
