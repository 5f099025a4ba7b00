//go:build nginx

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/internal/nginxtest"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testnet"
	"github.com/regmirror/regmirror/mirror"
)

// Run with: make proxy-log (installs Debian's nginx if missing).

// Three replicas, each a `regmirror serve` process with a data directory
// of its own, behind nginx taking them in turn: eight clients pulling one
// image at once, cold, make the upstream send each blob and the manifest
// once in all and revalidate the tag once, and every client gets the
// verified bytes. Pulled again through each replica
// directly, the image costs the upstream no blob GET: a replica keeps what
// it fetched from a peer. A fourth replica whose secret is wrong has its
// forwards refused and fetches from the upstream instead, counting each
// refusal, and serves the right bytes.
func TestClusterBehindNginxFetchesEachBlobOnce(t *testing.T) {
	t.Parallel()
	hub, hubCfg := startHub(t)
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 6, LayerSize: 3 << 20, Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	hub.Reset()
	dir := t.TempDir()
	addrs, peers, _ := startReplicas(t, dir, hubCfg, 3)
	proxy := nginxtest.Start(t, addrs...)

	var clients errgroup.Group
	for range 8 {
		clients.Go(func() error { return pullVerified(t.Context(), proxy, img) })
	}
	if err := clients.Wait(); err != nil {
		t.Fatal(err)
	}
	assertBlobGets(t, hub, img, 1, "after 8 cold pulls through nginx")
	assertManifestRequests(t, hub, img, "after 8 cold pulls through nginx")

	for _, a := range addrs {
		if err := pullVerified(t.Context(), "http://"+a, img); err != nil {
			t.Fatalf("pull from %s directly: %v", a, err)
		}
	}
	assertBlobGets(t, hub, img, 1, "after a pull from each replica directly")
	assertManifestRequests(t, hub, img, "after a pull from each replica directly")

	// A replica with another secret: its forwards are refused (401), so
	// it fetches every blob from the upstream itself, and says so.
	rogue := testnet.FreeAddr(t)
	rogueSecret := writeClusterSecret(t, "another-secret-0123456789abcdef012345")
	startDaemonProcess(t, clusterConfigFile(t, dir, "rogue", rogue, hubCfg, append(peers, "http://"+rogue), rogueSecret), rogue)
	if err := pullVerified(t.Context(), "http://"+rogue, img); err != nil {
		t.Fatalf("pull from the replica with the wrong secret: %v", err)
	}
	assertBlobGets(t, hub, img, 2, "after the replica with the wrong secret pulled")
	forwarded := forwardedBy(t, "http://"+rogue, append(peers, "http://"+rogue), pulledKeys(img))
	failures := newClient(t, "http://"+rogue).scrape()["regmirror_cluster_forward_failures_total"]
	if failures != float64(forwarded) {
		t.Errorf("the replica with the wrong secret counted %v forward failures; want %d, one per blob, manifest or tag another replica owns", failures, forwarded)
	}
	t.Logf("%d blobs, %d clients through nginx and 3 direct pulls: 1 upstream GET per blob and manifest, 1 HEAD of the tag; the wrong-secret replica fell back %d times",
		len(img.Blobs()), 8, forwarded)
}

// A replica killed with SIGKILL blocks no pull: nginx passes its clients
// to the others, which fetch the blobs it owned from the upstream
// themselves and count the failed forwards; the blobs the live replicas
// own are still fetched once.
func TestClusterBehindNginxSurvivesADeadReplica(t *testing.T) {
	t.Parallel()
	hub, hubCfg := startHub(t)
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 6, LayerSize: 1 << 20, Seed: 22})
	if err != nil {
		t.Fatal(err)
	}
	hub.Reset()
	addrs, peers, daemons := startReplicas(t, t.TempDir(), hubCfg, 3)
	proxy := nginxtest.Start(t, addrs...)
	if err := daemons[2].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	daemons[2].Wait()

	var clients errgroup.Group
	for range 4 {
		clients.Go(func() error { return pullVerified(t.Context(), proxy, img) })
	}
	if err := clients.Wait(); err != nil {
		t.Fatal(err)
	}
	members, err := cluster.New(cluster.Config{Self: peers[0], URLs: peers})
	if err != nil {
		t.Fatal(err)
	}
	dead, orphans := cluster.Peer{URL: peers[2]}, 0
	for _, b := range img.Blobs() {
		n := hub.BlobGets(b.Digest)
		if members.Owner(b.Digest.String()) != dead {
			if n != 1 {
				t.Errorf("blob %s, owned by a live replica: %d upstream GETs; want 1", b.Digest, n)
			}
			continue
		}
		orphans++
		if n < 1 || n > 2 {
			t.Errorf("blob %s, owned by the dead replica: %d upstream GETs; want one per live replica asked, 1 or 2", b.Digest, n)
		}
	}
	var failures float64
	for _, a := range addrs[:2] {
		failures += newClient(t, "http://"+a).scrape()["regmirror_cluster_forward_failures_total"]
	}
	if orphans > 0 && failures == 0 {
		t.Errorf("%d blobs owned by the dead replica, and no forward failure counted", orphans)
	}
	t.Logf("%d of %d blobs owned by the dead replica; %v forwards failed over to the upstream", orphans, len(img.Blobs()), failures)
}

// Three replicas behind nginx with the same hosted.token_key_file: a
// client logs in the way docker does, through nginx, following the ping's
// challenge to the token endpoint of whichever replica nginx picks, and
// its token is accepted by every replica, asked directly and through
// nginx in turn: each upload starts at the owner of team/app, which
// checks the token that another replica signed.
func TestClusterBehindNginxAcceptsATokenFromAnyReplica(t *testing.T) {
	t.Parallel()
	_, hubCfg := startHub(t)
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(htpasswdLine(t, "alice", "alice-pw", mirror.MinBcryptCost)), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenKey, _ := writeTokenKey(t, dir, "token-key")
	hosted := fmt.Sprintf("hosted:\n  htpasswd: %s\n  repositories: [team/*]\n  token_key_file: %s\n", htpasswd, tokenKey)
	secret := writeClusterSecret(t, clusterSecret)
	var addrs, peers []string
	for range 3 {
		a := testnet.FreeAddr(t)
		addrs, peers = append(addrs, a), append(peers, "http://"+a)
	}
	for i, a := range addrs {
		path := clusterConfigFile(t, dir, fmt.Sprintf("replica%d", i), a, hubCfg, peers, secret)
		appendToFile(t, path, hosted)
		startDaemonProcess(t, path, a)
	}
	proxy := nginxtest.Start(t, addrs...)

	token := dockerLogin(t, proxy, "alice", "alice-pw", "repository:team/app:pull,push")
	for _, base := range append(peers, proxy, proxy, proxy) {
		if status := startUpload(t, base, token); status != http.StatusAccepted {
			t.Errorf("an upload at %s with the token = %d, want 202", base, status)
		}
	}
}

// appendToFile adds text at the end of the file at path.
func appendToFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// dockerLogin fetches a token as docker does: the ping at base answers 401
// with a Bearer challenge, whose realm, asked with the credentials for
// scope, answers the token.
func dockerLogin(t *testing.T, base, user, password, scope string) string {
	t.Helper()
	resp, err := http.Get(base + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	challenge := resp.Header.Get("WWW-Authenticate")
	realm, service, ok := parseBearerChallenge(challenge)
	if resp.StatusCode != http.StatusUnauthorized || !ok {
		t.Fatalf("ping = %d, WWW-Authenticate %q; want 401 with a Bearer challenge", resp.StatusCode, challenge)
	}
	if !strings.HasPrefix(realm, base+"/") {
		t.Fatalf("the challenge's realm %s is not at %s, which the client asked", realm, base)
	}
	return fetchToken(t, realm+"?"+url.Values{"service": {service}, "scope": {scope}}.Encode(), user, password)
}

// parseBearerChallenge reads the realm and service of a Bearer challenge.
func parseBearerChallenge(h string) (realm, service string, ok bool) {
	params, found := strings.CutPrefix(h, "Bearer ")
	if !found {
		return "", "", false
	}
	for _, p := range strings.Split(params, ",") {
		k, v, _ := strings.Cut(p, "=")
		switch strings.TrimSpace(k) {
		case "realm":
			realm = strings.Trim(v, `"`)
		case "service":
			service = strings.Trim(v, `"`)
		}
	}
	return realm, service, realm != ""
}

// startUpload starts an upload to team/app at base with a token and
// returns the status.
func startUpload(t *testing.T, base, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v2/team/app/blobs/uploads/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startReplicas runs n replicas of a cluster, each a `regmirror serve`
// process with a data directory of its own under dir, all sharing one
// secret and knowing each other. It returns their addresses, their peer
// URLs and their processes.
func startReplicas(t *testing.T, dir string, hubCfg Config, n int) (addrs, peers []string, daemons []*exec.Cmd) {
	t.Helper()
	secret := writeClusterSecret(t, clusterSecret)
	for range n {
		a := testnet.FreeAddr(t)
		addrs, peers = append(addrs, a), append(peers, "http://"+a)
	}
	for i, a := range addrs {
		daemons = append(daemons, startDaemonProcess(t, clusterConfigFile(t, dir, fmt.Sprintf("replica%d", i), a, hubCfg, peers, secret), a))
	}
	return addrs, peers, daemons
}

// clusterConfigFile writes the config of one replica listening on addr.
func clusterConfigFile(t *testing.T, dir, name, addr string, hubCfg Config, peers []string, secret string) string {
	t.Helper()
	u := hubCfg.Upstreams[0]
	yaml := fmt.Sprintf(`listen: %s
data_dir: %s
upstreams:
  - host: docker.io
    url: %s
    username: %s
    password: %s
    expose: ["library/*"]
cluster:
  self: http://%s
  peers: ["%s"]
  secret_file: %s
`, addr, filepath.Join(dir, name), u.URL, u.Username, u.Password, addr, strings.Join(peers, `", "`), secret)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pullVerified pulls img as library/node:10 from base the way dockerd
// does, and checks the digest of every manifest and blob.
func pullVerified(ctx context.Context, base string, img registrytest.Image) error {
	get := func(method, path string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, err
	}
	if status, _, err := get(http.MethodHead, "/v2/library/node/manifests/10"); err != nil || status != http.StatusOK {
		return fmt.Errorf("HEAD library/node:10 = %d, %v", status, err)
	}
	if status, body, err := get(http.MethodGet, "/v2/library/node/manifests/"+img.Manifest.Digest.String()); err != nil || status != http.StatusOK || digestOf(body) != img.Manifest.Digest.String() {
		return fmt.Errorf("GET manifest = %d, %v", status, err)
	}
	for _, b := range img.Blobs() {
		status, body, err := get(http.MethodGet, "/v2/library/node/blobs/"+b.Digest.String())
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("GET blob %s = %d, %v", b.Digest, status, err)
		}
		if got := digestOf(body); got != b.Digest.String() {
			return fmt.Errorf("GET blob %s: %d bytes hashing to %s", b.Digest, len(body), got)
		}
	}
	return nil
}

func assertBlobGets(t *testing.T, hub *registrytest.Registry, img registrytest.Image, want int, when string) {
	t.Helper()
	for _, b := range img.Blobs() {
		if n := hub.BlobGets(b.Digest); n != want {
			t.Errorf("%s: the upstream sent blob %s %d times; want %d", when, b.Digest, n, want)
		}
	}
}

// assertManifestRequests checks that the upstream was asked for the tag
// library/node:10 once (a HEAD; a GET would count too) and sent the
// manifest of img once, however many replicas pulled it.
func assertManifestRequests(t *testing.T, hub *registrytest.Registry, img registrytest.Image, when string) {
	t.Helper()
	if heads, gets := hub.ManifestHeads("library/node", "10"), hub.ManifestGets("library/node", "10"); heads+gets != 1 {
		t.Errorf("%s: the upstream saw %d HEADs and %d GETs of the tag; want 1 in all", when, heads, gets)
	}
	if n := hub.ManifestGets("library/node", img.Manifest.Digest.String()); n != 1 {
		t.Errorf("%s: the upstream sent manifest %s %d times; want 1", when, img.Manifest.Digest, n)
	}
}

// pulledKeys names for ownership what a pull of img as library/node:10
// asks the upstream for: the tag, the manifest and the blobs.
func pulledKeys(img registrytest.Image) []string {
	keys := []string{"docker.io/library/node:10", img.Manifest.Digest.String()}
	for _, b := range img.Blobs() {
		keys = append(keys, b.Digest.String())
	}
	return keys
}

// forwardedBy counts the keys that self does not own among members.
func forwardedBy(t *testing.T, self string, members []string, keys []string) int {
	t.Helper()
	peers, err := cluster.New(cluster.Config{Self: self, URLs: members})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if peers.Owner(k) != peers.Self() {
			n++
		}
	}
	return n
}
