package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// hostedCluster is replicas of a cluster with hosted repositories, each a
// daemon in this process with a data directory of its own, all with the
// same hosted section and token key: team-a/* for alice, team-b/* for bob,
// and library/*, which anyone may pull, alice push, and which falls
// through to an upstream whose library/* only the mirror's credentials
// read and which is not exposed.
type hostedCluster struct {
	t     *testing.T
	hub   *registrytest.Registry
	img   registrytest.Image // library/node:10 upstream
	urls  []string
	cfgs  []Config
	stops []func() error
}

const (
	alicePassword = "alice-pw-6d1e"
	bobPassword   = "bob-pw-9a2c"
)

func startHostedCluster(t *testing.T, n int) *hostedCluster {
	t.Helper()
	return startHostedClusterWith(t, n, nil)
}

// startHostedClusterWith is startHostedCluster with tweak, if any, applied
// to each replica's configuration last.
func startHostedClusterWith(t *testing.T, n int, tweak func(*Config)) *hostedCluster {
	t.Helper()
	c := &hostedCluster{t: t}
	c.hub = registrytest.New(t, registrytest.Options{Username: hubUser, Password: hubPassword, Private: []string{"library/*"}})
	var err error
	if c.img, err = c.hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 8 << 10, Seed: 31}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	users := htpasswdLine(t, "alice", alicePassword, mirror.MinBcryptCost) + htpasswdLine(t, "bob", bobPassword, mirror.MinBcryptCost)
	if err := os.WriteFile(htpasswd, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenKey, _ := writeTokenKey(t, dir, "token-key")
	secret := writeClusterSecret(t, clusterSecret)
	lns := make([]net.Listener, n)
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		c.urls = append(c.urls, "http://"+lns[i].Addr().String())
	}
	for i := range lns {
		c.cfgs = append(c.cfgs, Config{DataDir: filepath.Join(dir, fmt.Sprint("replica", i)),
			Upstreams: []UpstreamConfig{{Host: "docker.io", URL: c.hub.URL(), Username: hubUser, Password: hubPassword}},
			Hosted: HostedConfig{Htpasswd: htpasswd, TokenKeyFile: tokenKey,
				Repositories: []string{"team-a/*", "team-b/*", "library/*"},
				FallThrough:  []string{"library/*"},
				Groups:       map[string][]string{"team-a": {"alice"}, "team-b": {"bob"}},
				Permissions: []PermissionConfig{
					{Repositories: []string{"team-a/*"}, Groups: []string{"team-a"}, Actions: []string{"pull", "push"}},
					{Repositories: []string{"team-b/*"}, Groups: []string{"team-b"}, Actions: []string{"pull", "push"}},
					{Repositories: []string{"library/*"}, Anonymous: true, Actions: []string{"pull"}},
					{Repositories: []string{"library/*"}, Users: []string{"alice"}, Actions: []string{"pull", "push"}},
				}},
			Cluster: ClusterConfig{Self: c.urls[i], Peers: c.urls, SecretFile: secret},
		}.withDefaults())
		if tweak != nil {
			tweak(&c.cfgs[i])
		}
		c.stops = append(c.stops, nil)
	}
	for i, ln := range lns {
		c.start(i, ln, c.urls)
	}
	return c
}

// start runs replica i on ln with members.
func (c *hostedCluster) start(i int, ln net.Listener, members []string) {
	c.t.Helper()
	cfg := c.cfgs[i]
	cfg.Cluster.Peers = members
	if err := cfg.validate(); err != nil {
		c.t.Fatal(err)
	}
	_, c.stops[i] = startDaemonOn(c.t, ln, cfg, io.Discard)
	waitFor(c.t, c.urls[i]+"/healthz")
}

// restart stops replica i and runs it again on the same address and data
// directory, with members.
func (c *hostedCluster) restart(i int, members []string) {
	c.t.Helper()
	if err := c.stops[i](); err != nil {
		c.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", strings.TrimPrefix(c.urls[i], "http://"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.start(i, ln, members)
}

// owner returns the index of the replica that owns hosted repository name.
func (c *hostedCluster) owner(name string) int {
	c.t.Helper()
	peers, err := cluster.New(cluster.Config{Self: c.urls[0], URLs: c.urls})
	if err != nil {
		c.t.Fatal(err)
	}
	return slices.Index(c.urls, peers.Owner("hosted:"+name).URL)
}

// repoOwnedBy returns a repository name under prefix that replica i owns.
func (c *hostedCluster) repoOwnedBy(prefix string, i int) string {
	c.t.Helper()
	for n := range 1000 {
		if name := fmt.Sprintf("%s/app%d", prefix, n); c.owner(name) == i {
			return name
		}
	}
	c.t.Fatalf("no name under %s owned by replica %d", prefix, i)
	return ""
}

// hostedRequest is one request of a client: who (alice, bob or nobody),
// method, path and body; it returns the status, the headers and the body.
func hostedRequest(t *testing.T, base, user, method, path string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	switch user {
	case "alice":
		req.SetBasicAuth("alice", alicePassword)
	case "bob":
		req.SetBasicAuth("bob", bobPassword)
	}
	if strings.Contains(path, "/manifests/") {
		req.Header.Set("Accept", registrytest.MediaTypeDockerManifest+", application/vnd.oci.image.manifest.v1+json")
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		if strings.Contains(path, "/manifests/") {
			req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// pushedImage is a one-layer OCI image pushed by hand.
type pushedImage struct {
	config, layer, manifest []byte
}

func newPushedImage(seed string) pushedImage {
	img := pushedImage{config: []byte(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`),
		layer: bytes.Repeat([]byte(seed), 300<<10)}
	img.manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`,
		digest.FromBytes(img.config), len(img.config), digest.FromBytes(img.layer), len(img.layer)))
	return img
}

// push uploads img's blobs and manifest to repo:tag as user, each request
// of an upload to the next of bases in turn: the POST to one replica, the
// PATCH to another, the PUT to a third, following the Location each
// answer gives, as a client behind a load balancer does.
func pushSpread(t *testing.T, bases []string, user, repo, tag string, img pushedImage) {
	t.Helper()
	next := 0
	base := func() string { b := bases[next%len(bases)]; next++; return b }
	for _, blob := range [][]byte{img.config, img.layer} {
		status, h, _ := hostedRequest(t, base(), user, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil)
		if status != http.StatusAccepted {
			t.Fatalf("POST upload to %s = %d", repo, status)
		}
		location := h.Get("Location")
		if !strings.HasPrefix(location, "/v2/") {
			t.Fatalf("upload Location %q is not a path the load balancer can route", location)
		}
		status, h, _ = hostedRequest(t, base(), user, http.MethodPatch, location, blob)
		if status != http.StatusAccepted {
			t.Fatalf("PATCH %s = %d", location, status)
		}
		location = h.Get("Location")
		sep := "?"
		if strings.Contains(location, "?") {
			sep = "&"
		}
		status, _, _ = hostedRequest(t, base(), user, http.MethodPut, location+sep+"digest="+digest.FromBytes(blob).String(), nil)
		if status != http.StatusCreated {
			t.Fatalf("PUT %s = %d", location, status)
		}
	}
	status, _, body := hostedRequest(t, base(), user, http.MethodPut, "/v2/"+repo+"/manifests/"+tag, img.manifest)
	if status != http.StatusCreated {
		t.Fatalf("PUT manifest %s:%s = %d %.200q", repo, tag, status, body)
	}
}

// checkPulled reads repo:tag's manifest and blobs as user from base and
// compares them with img, byte for byte.
func checkPulled(t *testing.T, base, user, repo, tag string, img pushedImage) {
	t.Helper()
	status, _, got := hostedRequest(t, base, user, http.MethodGet, "/v2/"+repo+"/manifests/"+tag, nil)
	if status != http.StatusOK || !bytes.Equal(got, img.manifest) {
		t.Errorf("%s: GET %s:%s = %d, %d bytes; want the pushed manifest", base, repo, tag, status, len(got))
	}
	for _, blob := range [][]byte{img.config, img.layer} {
		d := digest.FromBytes(blob)
		status, _, got := hostedRequest(t, base, user, http.MethodGet, "/v2/"+repo+"/blobs/"+d.String(), nil)
		if status != http.StatusOK || !bytes.Equal(got, blob) {
			t.Errorf("%s: GET %s blob %s = %d, %d bytes; want the pushed %d", base, repo, d, status, len(got), len(blob))
		}
	}
}

// A push whose POST, PATCH and PUT of each blob, and the manifest, land
// on different replicas completes, the repository's owner being none of
// the first ones; the image then reads the same from every replica.
func TestClusterHostedPushAcrossReplicas(t *testing.T) {
	t.Parallel()
	c := startHostedCluster(t, 3)
	repo := c.repoOwnedBy("team-a", 2)
	img := newPushedImage("spread")
	pushSpread(t, c.urls, "alice", repo, "1", img)
	for _, base := range c.urls {
		checkPulled(t, base, "alice", repo, "1", img)
	}
}

// Another team's user and an anonymous client get, through a replica
// that does not own the repository, what they get from the owner itself
// (403 and 401), by tag and by digest, HEAD and GET, manifests, blobs and
// tag lists, and a push; never the content. Through every replica, an
// anonymous client reads the upstream's private namesake of a hosted name
// that falls through as the owner would let it (not at all: it is not
// exposed), while alice, logged in, reads it and lists the tags of both.
func TestClusterHostedReplicasRefuseWhatTheOwnerRefuses(t *testing.T) {
	t.Parallel()
	c := startHostedCluster(t, 3)
	owner := 1
	repo := c.repoOwnedBy("team-a", owner)
	img := newPushedImage("private")
	pushSpread(t, c.urls[owner:owner+1], "alice", repo, "1", img)
	manifest := digest.FromBytes(img.manifest).String()
	layer := digest.FromBytes(img.layer).String()
	requests := []struct{ method, path string }{
		{http.MethodHead, "/v2/" + repo + "/manifests/1"},
		{http.MethodGet, "/v2/" + repo + "/manifests/1"},
		{http.MethodHead, "/v2/" + repo + "/manifests/" + manifest},
		{http.MethodGet, "/v2/" + repo + "/manifests/" + manifest},
		{http.MethodHead, "/v2/" + repo + "/blobs/" + layer},
		{http.MethodGet, "/v2/" + repo + "/blobs/" + layer},
		{http.MethodGet, "/v2/" + repo + "/tags/list"},
		{http.MethodPost, "/v2/" + repo + "/blobs/uploads/"},
		{http.MethodPut, "/v2/" + repo + "/manifests/2"},
	}
	for _, user := range []string{"bob", ""} {
		want := http.StatusForbidden
		if user == "" {
			want = http.StatusUnauthorized
		}
		for _, rq := range requests {
			var body []byte
			if rq.method == http.MethodPut {
				body = img.manifest
			}
			direct, _, _ := hostedRequest(t, c.urls[owner], user, rq.method, rq.path, body)
			if direct != want {
				t.Errorf("user %q: %s %s at the owner = %d, want %d", user, rq.method, rq.path, direct, want)
			}
			for i, base := range c.urls {
				if i == owner {
					continue
				}
				status, _, got := hostedRequest(t, base, user, rq.method, rq.path, body)
				if status != direct || bytes.Contains(got, img.layer[:64]) || bytes.Equal(got, img.manifest) {
					t.Errorf("user %q: %s %s through replica %d = %d, %d bytes; want %d as from the owner", user, rq.method, rq.path, i, status, len(got), direct)
				}
			}
		}
	}

	// library/node is hosted and falls through to the upstream's, which
	// only the mirror's credentials read: anonymous clients are refused it
	// as by the owner, however the request reaches it.
	fallOwner := c.owner("library/node")
	pushSpread(t, c.urls[fallOwner:fallOwner+1], "alice", "library/node", "hosted-1", newPushedImage("fall-through"))
	tagPath := "/v2/library/node/manifests/10"
	direct, _, _ := hostedRequest(t, c.urls[fallOwner], "", http.MethodGet, tagPath, nil)
	if direct == http.StatusOK {
		t.Fatalf("anonymous GET %s at the owner = 200; the upstream's library/node is not exposed", tagPath)
	}
	for i, base := range c.urls {
		if status, _, _ := hostedRequest(t, base, "", http.MethodGet, tagPath, nil); status != direct {
			t.Errorf("anonymous GET %s through replica %d = %d; want %d as from the owner", tagPath, i, status, direct)
		}
		status, _, got := hostedRequest(t, base, "alice", http.MethodGet, tagPath, nil)
		if status != http.StatusOK || digest.FromBytes(got) != c.img.Manifest.Digest {
			t.Errorf("alice: GET %s through replica %d = %d; want 200 and the upstream's manifest", tagPath, i, status)
		}
		status, _, got = hostedRequest(t, base, "alice", http.MethodGet, "/v2/library/node/tags/list", nil)
		var list struct{ Tags []string }
		if err := json.Unmarshal(got, &list); err != nil || status != http.StatusOK {
			t.Fatalf("alice: tags of library/node through replica %d = %d %.200q", i, status, got)
		}
		if slices.Sort(list.Tags); !slices.Equal(list.Tags, []string{"10", "hosted-1"}) {
			t.Errorf("alice: tags of library/node through replica %d = %v; want the hosted and the upstream's, [10 hosted-1]", i, list.Tags)
		}
	}
}

// A request marked as a hosted forward without a valid signature is
// refused with 401, even with valid credentials: the mark would make a
// replica serve (or take a push into) its own copy of a repository
// another replica owns.
func TestClusterHostedForgedForwardMarkIsRefused(t *testing.T) {
	t.Parallel()
	c := startHostedCluster(t, 3)
	repo := c.repoOwnedBy("team-a", 0)
	img := newPushedImage("forged")
	pushSpread(t, c.urls[:1], "alice", repo, "1", img)
	for _, header := range []http.Header{
		{"Regmirror-Hosted-Forwarded-By": {c.urls[0]}},
		{"Regmirror-Hosted-Forwarded-By": {c.urls[0]}, "Regmirror-Peer-Time": {"1"}, "Regmirror-Peer-Nonce": {strings.Repeat("a", 32)},
			"Regmirror-Peer-Signature": {strings.Repeat("ab", 32)}, "Regmirror-Client-Addr": {"10.0.0.1:1"}},
	} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			path := "/v2/" + repo + "/manifests/1"
			if method == http.MethodPost {
				path = "/v2/" + repo + "/blobs/uploads/"
			}
			req, err := http.NewRequest(method, c.urls[1]+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = header.Clone()
			req.SetBasicAuth("alice", alicePassword)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with a forged mark %v = %d, want 401", method, path, header, resp.StatusCode)
			}
		}
	}
}

// A replica with a copy of a hosted repository from when it owned it (a
// cluster of one, then) never serves that copy once another replica owns
// the repository: it passes the request to the owner, which does not hold
// the tag (404), and when the owner is down it answers 503 UNAVAILABLE at
// once, counts it and serves nothing of its own.
func TestClusterHostedOwnerDownIsUnavailableNotStale(t *testing.T) {
	t.Parallel()
	c := startHostedCluster(t, 3)
	const stale = 1
	repo := c.repoOwnedBy("team-a", 0)
	c.restart(stale, c.urls[stale:stale+1])
	img := newPushedImage("stale")
	pushSpread(t, c.urls[stale:stale+1], "alice", repo, "1", img)
	checkPulled(t, c.urls[stale], "alice", repo, "1", img)
	c.restart(stale, c.urls)

	path := "/v2/" + repo + "/manifests/1"
	if status, _, _ := hostedRequest(t, c.urls[stale], "alice", http.MethodGet, path, nil); status != http.StatusNotFound {
		t.Errorf("GET %s through the replica with a stale copy = %d; want the owner's 404", path, status)
	}
	if err := c.stops[0](); err != nil {
		t.Fatal(err)
	}
	for _, rq := range []struct{ method, path string }{
		{http.MethodGet, path},
		{http.MethodHead, path},
		{http.MethodGet, "/v2/" + repo + "/blobs/" + digest.FromBytes(img.layer).String()},
		{http.MethodPost, "/v2/" + repo + "/blobs/uploads/"},
	} {
		status, h, body := hostedRequest(t, c.urls[stale], "alice", rq.method, rq.path, nil)
		var answer struct{ Errors []struct{ Code string } }
		if status != http.StatusServiceUnavailable || (rq.method != http.MethodHead && (json.Unmarshal(body, &answer) != nil ||
			len(answer.Errors) != 1 || answer.Errors[0].Code != "UNAVAILABLE")) {
			t.Errorf("%s %s with the owner down = %d %.200q; want 503 UNAVAILABLE", rq.method, rq.path, status, body)
		}
		if h.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
			t.Errorf("%s %s with the owner down: no API version header", rq.method, rq.path)
		}
	}
	if n := newClient(t, c.urls[stale]).scrape()["regmirror_cluster_hosted_forward_failures_total"]; n != 4 {
		t.Errorf("regmirror_cluster_hosted_forward_failures_total = %v, want 4", n)
	}
}

// A push through a replica that does not own the repository is reported
// by the owner as the client made it: the webhook event names the host
// the client used, in its URL too, and the request ID the client was
// answered with, never the owner's own address (which a receiver may not
// reach, and which would bypass the load balancer) nor an ID that no
// response carried.
func TestClusterHostedForwardedPushEventNamesTheClientsRequest(t *testing.T) {
	t.Parallel()
	h := startHook(t, []byte("hook-signing-secret"))
	dir := t.TempDir()
	secret, header := filepath.Join(dir, "secret"), filepath.Join(dir, "hook.header")
	if err := os.WriteFile(secret, []byte("hook-signing-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(header, []byte("Authorization: Bearer hook-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startHostedClusterWith(t, 2, func(cfg *Config) {
		cfg.Notifications.Endpoints = []EndpointConfig{{Name: "ci", URL: h.url, SecretFile: secret, HeadersFile: header}}
	})
	repo := c.repoOwnedBy("team-a", 0)
	through := c.urls[1]
	img := newPushedImage("event")
	pushSpread(t, []string{through}, "alice", repo, "0", img)

	req, err := http.NewRequest(http.MethodPut, through+"/v2/"+repo+"/manifests/1", bytes.NewReader(img.manifest))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", alicePassword)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest through replica 1 = %d", resp.StatusCode)
	}
	events := h.until("1")
	e := events[len(events)-1]
	host := strings.TrimPrefix(through, "http://")
	wantURL := through + "/v2/" + repo + "/manifests/" + digest.FromBytes(img.manifest).String()
	if e.Request.Host != host || e.Target.URL != wantURL {
		t.Errorf("push event through replica 1: host %q, URL %q; want the client's %q, %q", e.Request.Host, e.Target.URL, host, wantURL)
	}
	if id := resp.Header.Get("X-Request-Id"); id == "" || e.Request.ID != id {
		t.Errorf("push event through replica 1: request ID %q; want the one the client was answered with, %q", e.Request.ID, id)
	}
}

// clientLeavingFrom is an HTTP client whose connections leave from the loopback
// address ip, a client of its own to the replicas' per-client connection
// caps, and are not kept for reuse.
func clientLeavingFrom(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
}

// uploadsWritten counts the uploads under dir whose data holds bytes.
func uploadsWritten(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "data" || filepath.Base(filepath.Dir(filepath.Dir(path))) != "uploads" {
			return err
		}
		if info, err := d.Info(); err == nil && info.Size() > 0 {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A replica's forwards to the owner carry the requests of many clients:
// the owner does not cap them as one client's connections. With a cap of
// two per client, one client holding two uploads open through a replica
// (its own two connections, within its cap) leaves every other client
// able to reach the owner's repositories through that replica, as it
// reaches them at the owner directly.
func TestClusterHostedForwardsAreNotCappedAsOneClient(t *testing.T) {
	t.Parallel()
	c := startHostedClusterWith(t, 2, func(cfg *Config) { cfg.Connections.MaxPerClient = 2 })
	repo := c.repoOwnedBy("team-a", 0)
	through := c.urls[1]
	holder, other := clientLeavingFrom("127.0.0.2"), clientLeavingFrom("127.0.0.3")
	send := func(hc *http.Client, method, url string, body io.Reader) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("alice", alicePassword)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	var uploads []string
	for range 2 { // from an address of their own, whose connections close
		resp := send(clientLeavingFrom("127.0.0.4"), http.MethodPost, through+"/v2/"+repo+"/blobs/uploads/", nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST upload through replica 1 = %d", resp.StatusCode)
		}
		uploads = append(uploads, resp.Header.Get("Location"))
	}
	for _, location := range uploads {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
		go func() {
			if resp, err := holder.Do(patchRequest(t, through+location, pr)); err == nil {
				resp.Body.Close()
			}
		}()
		if _, err := pw.Write(bytes.Repeat([]byte("x"), 64<<10)); err != nil {
			t.Fatalf("PATCH %s through replica 1: %v", location, err)
		}
	}
	for uploadsWritten(t, c.cfgs[0].DataDir) < 2 {
		runtime.Gosched() // until the owner reads both uploads' bodies
	}

	path := "/v2/" + repo + "/tags/list"
	for _, base := range []string{c.urls[0], through} {
		resp := send(other, http.MethodGet, base+path, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("another client's GET %s at %s = %d while one client holds two uploads; want the owner's 404", path, base, resp.StatusCode)
		}
	}
}

// patchRequest is alice's PATCH of an upload at url with body.
func patchRequest(t *testing.T, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(http.MethodPatch, url, body)
	if err != nil {
		t.Error(err)
		return nil
	}
	req.SetBasicAuth("alice", alicePassword)
	req.Header.Set("Content-Type", "application/octet-stream")
	return req
}

// An upload whose body stalls past connections.body_idle_timeout fails
// through a replica that does not own the repository as at the owner:
// never with a success status that the client would take for a PATCH
// the owner accepted.
func TestClusterHostedStalledUploadIsNotAnsweredAsASuccess(t *testing.T) {
	t.Parallel()
	c := startHostedClusterWith(t, 2, func(cfg *Config) { cfg.Connections.BodyIdleTimeout = 200 * time.Millisecond })
	repo := c.repoOwnedBy("team-a", 0)
	for i, base := range c.urls {
		status, h, _ := hostedRequest(t, base, "alice", http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil)
		if status != http.StatusAccepted {
			t.Fatalf("POST upload at replica %d = %d", i, status)
		}
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Half the declared body, then nothing, until the server gives up.
		head := "PATCH " + h.Get("Location") + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") +
			"\r\nContent-Type: application/octet-stream\r\nContent-Length: 2048\r\n" +
			"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePassword)) + "\r\n\r\n"
		if _, err := conn.Write(append([]byte(head), bytes.Repeat([]byte("x"), 1024)...)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			continue // the connection was cut: no success either
		}
		resp.Body.Close()
		if resp.StatusCode < 300 {
			t.Errorf("stalled PATCH at replica %d = %d; want a failure", i, resp.StatusCode)
		}
	}
}
