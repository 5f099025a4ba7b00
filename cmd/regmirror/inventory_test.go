package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// inventoryFixture is a daemon that has pulled a public multi-platform
// image (library/node:20) and a private one (acme/payroll:v9, readable only
// with the mirror's credentials), and holds two pushed repositories: one
// anonymous clients may pull (team/public), one only alice may
// (team/private).
type inventoryFixture struct {
	hub     *registrytest.Registry
	base    string
	dataDir string
	node    registrytest.Index
	payroll registrytest.Image
}

func newInventoryFixture(t *testing.T) inventoryFixture {
	t.Helper()
	hub := registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"acme/*"}})
	node, err := hub.PushIndex("library/node", "20", registrytest.ImageOptions{Layers: 2, LayerSize: 32 << 10, Seed: 20})
	if err != nil {
		t.Fatal(err)
	}
	payroll, err := hub.PushImage("acme/payroll", "v9", registrytest.ImageOptions{Layers: 1, LayerSize: 8 << 10, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: shortTempDir(t), Upstreams: []UpstreamConfig{{
		Host: "docker.io", URL: hub.URL(), Username: hubUser, Password: hubPassword, // nothing exposed
	}}}
	withUsers(t, &cfg, "alice", "bob")
	cfg.Hosted.Permissions = []PermissionConfig{
		{Repositories: []string{"team/*"}, Users: []string{"alice"}, Actions: []string{"pull", "push"}},
		{Repositories: []string{"team/public"}, Anonymous: true, Actions: []string{"pull"}},
	}
	base := startDaemonLogging(t, cfg, slog.New(slog.DiscardHandler))
	f := inventoryFixture{hub: hub, base: base, dataDir: cfg.DataDir, node: node, payroll: payroll}

	anonymous := newClient(t, base)
	if status, _ := anonymous.do(http.MethodHead, "/v2/library/node/manifests/20"); status != http.StatusOK {
		t.Fatalf("HEAD node:20 = %d", status)
	}
	anonymous.do(http.MethodGet, "/v2/library/node/manifests/"+node.Descriptor.Digest.String())
	for _, img := range node.Images {
		anonymous.pullImage("library/node", img.Manifest.Digest.String(), img)
	}
	newUserClient(t, base, "bob").pullImage("acme/payroll", "v9", payroll)
	host := strings.TrimPrefix(base, "http://")
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "alice", Password: passwordOf("alice")}))
	for _, repo := range []string{"team/public", "team/private"} {
		img, err := random.Image(4<<10, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(mustRef(t, host+"/"+repo+":1"), img, auth); err != nil {
			t.Fatalf("push %s: %v", repo, err)
		}
	}
	return f
}

// getJSON GETs path as c and decodes the answer, which must be a 200.
func getJSON[T any](t *testing.T, c *client, path string) T {
	t.Helper()
	status, body := c.do(http.MethodGet, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, status, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	return v
}

type catalogPage struct {
	Repositories []string `json:"repositories"`
}

type apiRepositories struct {
	Repositories []mirror.Repository `json:"repositories"`
}

type searchAnswer struct {
	NumResults int `json:"num_results"`
	Results    []struct {
		Name string `json:"name"`
	} `json:"results"`
}

// The catalog, the repository API, the v1 search and `cache ls` list the
// same repositories, by the names clients pull; anonymous clients see
// neither the private upstream repository nor the private hosted one in
// any of them, and cannot read their tags or manifests through the API.
func TestInventoryAgreesWithPullsAndPushes(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t)
	all := []string{"acme/payroll", "library/node", "team/private", "team/public"}
	tests := []struct {
		name string
		c    *client
		want []string
	}{
		{"anonymous", newClient(t, f.base), []string{"library/node", "team/public"}},
		{"bob, logged in without hosted permissions", newUserClient(t, f.base, "bob"), []string{"acme/payroll", "library/node", "team/public"}},
		{"alice, who may pull every team repository", newUserClient(t, f.base, "alice"), all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := getJSON[catalogPage](t, tt.c, "/v2/_catalog").Repositories; !slices.Equal(got, tt.want) {
				t.Errorf("catalog = %q, want %q", got, tt.want)
			}
			var names []string
			for _, r := range getJSON[apiRepositories](t, tt.c, "/api/v1/repositories").Repositories {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("API repositories = %q, want %q", names, tt.want)
			}
			found := getJSON[searchAnswer](t, tt.c, "/v1/search?q=a&n=25")
			var searched []string
			for _, r := range found.Results {
				searched = append(searched, r.Name)
			}
			if !slices.Equal(searched, tt.want) || found.NumResults != len(tt.want) {
				t.Errorf("search for a = %d %q, want %q", found.NumResults, searched, tt.want)
			}
			for _, hidden := range slices.DeleteFunc(slices.Clone(all), func(s string) bool { return slices.Contains(tt.want, s) }) {
				for _, path := range []string{"/api/v1/repositories/" + hidden + "/tags", "/api/v1/repositories/" + hidden + "/manifests/" + f.payroll.Manifest.Digest.String()} {
					if status, body := tt.c.do(http.MethodGet, path); status != http.StatusNotFound || strings.Contains(string(body), "v9") {
						t.Errorf("GET %s = %d %s, want 404 naming nothing", path, status, body)
					}
				}
				if got := getJSON[searchAnswer](t, tt.c, "/v1/search?q="+hidden); got.NumResults != 0 {
					t.Errorf("search for %s found %+v", hidden, got.Results)
				}
			}
		})
	}

	// The operator on the host sees everything, with the API's numbers.
	ls := cliJSON[admin.LsReport](t, "cache", "ls", "--data-dir", f.dataDir)
	api := getJSON[apiRepositories](t, newUserClient(t, f.base, "alice"), "/api/v1/repositories").Repositories
	if !slices.Equal(ls.Repositories, api) {
		t.Errorf("cache ls = %+v\nAPI for alice = %+v", ls.Repositories, api)
	}
	var nodeSize int64
	for _, img := range f.node.Images {
		nodeSize += img.Manifest.Size
		for _, b := range img.Blobs() {
			nodeSize += b.Size
		}
	}
	nodeSize += f.node.Descriptor.Size
	for _, r := range ls.Repositories {
		switch r.Name {
		case "library/node":
			if !r.Cached || r.Hosted || r.Tags != 1 || r.Manifests != 3 || r.Size != nodeSize || r.LastPulled.IsZero() {
				t.Errorf("library/node = %+v, want cached, 1 tag, 3 manifests, %d bytes", r, nodeSize)
			}
		case "team/public", "team/private":
			if !r.Hosted || r.Cached || r.Tags != 1 || r.Manifests != 1 {
				t.Errorf("%s = %+v, want hosted with 1 tag and 1 manifest", r.Name, r)
			}
		}
	}
	human, _, err := runCLI(t, "cache", "ls", "--data-dir", f.dataDir, "library/node")
	if err != nil || !strings.Contains(human, "library/node:20") || !strings.Contains(human, "linux/amd64,linux/arm64/v8") {
		t.Errorf("cache ls library/node printed %q, %v", human, err)
	}

}

// A tag's platforms and size, an index's images, and an image's layers
// with their sizes, as the browse page shows them.
func TestInventoryAPIDescribesTagsAndManifests(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t)
	c := newClient(t, f.base)
	tags := getJSON[mirror.TagList](t, c, "/api/v1/repositories/library/node/tags")
	want := []string{"linux/amd64", "linux/arm64/v8"}
	if len(tags.Tags) != 1 || tags.Tags[0].Name != "20" || tags.Tags[0].Digest != f.node.Descriptor.Digest || !slices.Equal(tags.Tags[0].Platforms, want) {
		t.Fatalf("tags of library/node = %+v, want 20 -> %s on %q", tags, f.node.Descriptor.Digest, want)
	}
	index := getJSON[mirror.ManifestDetail](t, c, "/api/v1/repositories/library/node/manifests/"+f.node.Descriptor.Digest.String())
	if len(index.Manifests) != 2 || index.TotalSize != tags.Tags[0].Size {
		t.Fatalf("index = %+v, want 2 images totalling the tag's %d bytes", index, tags.Tags[0].Size)
	}
	for i, img := range f.node.Images {
		if got := index.Manifests[i]; got.Platform != want[i] || got.Digest != img.Manifest.Digest || !got.Cached {
			t.Errorf("index image %d = %+v, want %s %s, cached", i, got, want[i], img.Manifest.Digest)
		}
		detail := getJSON[mirror.ManifestDetail](t, c, "/api/v1/repositories/library/node/manifests/"+img.Manifest.Digest.String())
		if detail.Platform != want[i] || detail.Config == nil || detail.Config.Digest != img.Config.Digest || len(detail.Layers) != len(img.Layers) {
			t.Fatalf("image %d = %+v", i, detail)
		}
		for j, l := range img.Layers {
			if got := detail.Layers[j]; got.Digest != l.Digest || got.Size != l.Size || !got.Cached {
				t.Errorf("image %d layer %d = %+v, want %s of %d bytes, cached", i, j, got, l.Digest, l.Size)
			}
		}
	}
	if status, _ := c.do(http.MethodPost, "/api/v1/repositories"); status != http.StatusMethodNotAllowed {
		t.Errorf("POST to the API = %d, want 405", status)
	}
}

// The catalog pages like the distribution spec says: n and last, and a
// Link to the next page.
func TestCatalogPages(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t)
	c := newUserClient(t, f.base, "alice")
	var got []string
	path := "/v2/_catalog?n=3"
	for path != "" {
		req, err := http.NewRequest(http.MethodGet, f.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page catalogPage
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || len(page.Repositories) > 3 {
			t.Fatalf("GET %s = %+v, %v", path, page, err)
		}
		got = append(got, page.Repositories...)
		path = ""
		if link := resp.Header.Get("Link"); link != "" {
			path = strings.TrimPrefix(strings.Split(link, ">")[0], "<")
		}
	}
	if want := []string{"acme/payroll", "library/node", "team/private", "team/public"}; !slices.Equal(got, want) {
		t.Errorf("paged catalog = %q, want %q", got, want)
	}
}

// A tag listing of a cached repository falls back to the cached tags, with
// a warning, while the upstream is down; a repository never pulled still
// fails.
func TestTagListFallsBackToCachedTagsWhenUpstreamIsDown(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t)
	c := newClient(t, f.base)
	f.hub.SetDown(true)
	req, err := http.NewRequest(http.MethodGet, f.base+"/v2/library/node/tags/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Tags []string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK || !slices.Equal(list.Tags, []string{"20"}) {
		t.Fatalf("tags of library/node with the upstream down = %d %+v, %v; want [20]", resp.StatusCode, list, err)
	}
	if w := resp.Header.Get("Warning"); !strings.Contains(w, "cached tags") {
		t.Errorf("Warning = %q, want one saying the tags are the cached ones", w)
	}
	if status, _ := c.do(http.MethodGet, "/v2/library/redis/tags/list"); status == http.StatusOK {
		t.Errorf("tags of a repository never pulled with the upstream down = 200")
	}
}
