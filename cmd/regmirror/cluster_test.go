package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/internal/registrytest"
)

// writeClusterSecret writes a cluster secret file and returns its path.
func writeClusterSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const clusterSecret = "0123456789abcdef0123456789abcdef-cluster"

func TestClusterConfig(t *testing.T) {
	t.Parallel()
	secret := writeClusterSecret(t, clusterSecret)
	runConfigCases(t, []configCase{
		{
			name: "absent means off",
			yaml: "listen: :5000\n",
			check: func(t *testing.T, c Config) {
				if c.Cluster.enabled() {
					t.Errorf("cluster on without a section: %+v", c.Cluster)
				}
			},
		},
		{
			name: "static peers",
			yaml: "cluster:\n  self: http://10.0.0.1:5000\n  peers: [http://10.0.0.1:5000, http://10.0.0.2:5000]\n  secret_file: " + secret + "\n",
			check: func(t *testing.T, c Config) {
				if !c.Cluster.enabled() || len(c.Cluster.Peers) != 2 || c.Cluster.SecretFile != secret {
					t.Errorf("cluster = %+v", c.Cluster)
				}
			},
		},
		{
			name: "dns with refresh",
			yaml: "cluster:\n  self: http://10.0.0.1:5000\n  dns: regmirror-peers.default.svc:5000\n  refresh: 10s\n  secret_file: " + secret + "\n",
			check: func(t *testing.T, c Config) {
				host, port, err := c.Cluster.dnsName()
				if err != nil || host != "regmirror-peers.default.svc" || port != 5000 || c.Cluster.Refresh != 10*time.Second {
					t.Errorf("dns %q %d %v, refresh %s", host, port, err, c.Cluster.Refresh)
				}
			},
		},
	})
}

// Every problem of the cluster section is reported at its line.
func TestClusterConfigProblemsAtTheirLines(t *testing.T) {
	t.Parallel()
	const head = "listen: :5000\ncluster:\n"
	checkProblemsAtLines(t, []lineProblem{
		{"no self", head + "  peers: [http://10.0.0.2:5000]\n  secret_file: /s\n", 2, "self is required"},
		{"bad self", head + "  secret_file: /s\n  self: ftp://10.0.0.1\n  peers: [http://10.0.0.2:5000]\n", 4, "cluster.self"},
		{"bad peer", head + "  self: http://10.0.0.1:5000\n  secret_file: /s\n  peers:\n    - http://10.0.0.2:5000\n    - http://10.0.0.3:5000/path\n", 7, "cluster.peers[1]"},
		{"peers and dns", head + "  self: http://10.0.0.1:5000\n  secret_file: /s\n  peers: [http://10.0.0.2:5000]\n  dns: peers.svc:5000\n", 6, "not both"},
		{"neither peers nor dns", head + "  self: http://10.0.0.1:5000\n  secret_file: /s\n", 2, "set peers"},
		{"dns without port", head + "  self: http://10.0.0.1:5000\n  secret_file: /s\n  dns: peers.svc\n", 5, "name:port"},
		{"negative refresh", head + "  self: http://10.0.0.1:5000\n  secret_file: /s\n  dns: peers.svc:5000\n  refresh: -1s\n", 6, "must not be negative"},
		{"refresh without dns", head + "  self: http://10.0.0.1:5000\n  secret_file: /s\n  peers: [http://10.0.0.2:5000]\n  refresh: 1m\n", 6, "is for dns"},
		{"no secret", head + "  self: http://10.0.0.1:5000\n  peers: [http://10.0.0.2:5000]\n", 2, "secret_file is required"},
	})
}

// config check reads the secret files and reports a short one at its
// line, by its path, never by what it holds.
func TestClusterConfigCheckReadsTheSecretFiles(t *testing.T) {
	t.Parallel()
	short := writeClusterSecret(t, "too-short-to-sign")
	path := writeConfig(t, fmt.Sprintf("cluster:\n  self: http://10.0.0.1:5000\n  peers: [http://10.0.0.2:5000]\n  secret_file: %s\n", short))
	code, stdout, stderr := runExit(t, "config", "check", "--config", path)
	if code != exitConfig {
		t.Errorf("exit status %d, want %d", code, exitConfig)
	}
	if want := path + ":4: cluster.secret_file: cluster secret " + short + ": shorter than"; !strings.Contains(stderr, want) {
		t.Errorf("no %q in:\n%s", want, stderr)
	}
	if strings.Contains(stdout+stderr, "too-short-to-sign") {
		t.Errorf("the secret was printed:\n%s%s", stdout, stderr)
	}
}

// A request marked as forwarded by a peer is served only with a valid
// signature: unsigned or signed with another secret it is refused with
// 401, never served as an anonymous client's. Signed, it reads a
// repository that only the mirror's upstream credentials read, which an
// anonymous client is refused.
func TestClusterPeerRequestsAreVerified(t *testing.T) {
	t.Parallel()
	hub, img, self, logged := startPrivateReplica(t)
	layer := img.Layers[0]
	path := self + "/v2/library/node/blobs/" + layer.Digest.String()

	if status := getStatus(t, path, nil); status != http.StatusForbidden {
		t.Errorf("anonymous client: %d, want 403 (library/node is not exposed)", status)
	}
	if status := getStatus(t, path, http.Header{"Regmirror-Forwarded-By": {testPeerURL}}); status != http.StatusUnauthorized {
		t.Errorf("unsigned request marked as forwarded: %d, want 401", status)
	}
	if _, err := peerGetBlob(t, testPeerURL, self, "wrong-secret-0123456789abcdef0123456789", layer.Digest); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("request signed with another secret: %v, want 401", err)
	}
	body, err := peerGetBlob(t, testPeerURL, self, clusterSecret, layer.Digest)
	if err != nil || digest.FromBytes(body) != layer.Digest {
		t.Fatalf("signed peer request: %v, %d bytes", err, len(body))
	}
	if n := hub.BlobGets(layer.Digest); n != 1 {
		t.Errorf("%d upstream GETs, want 1", n)
	}
	if strings.Contains(logged(), clusterSecret) {
		t.Error("the cluster secret appears in the daemon's log")
	}
}

// A peer asks the owner of a tag where it points and reads the manifest
// from it, signed: the owner asks the upstream once and answers again
// from its cache while the tag is fresh.
func TestClusterPeerResolvesTagsAndReadsManifests(t *testing.T) {
	t.Parallel()
	hub, img, self, _ := startPrivateReplica(t)
	fwd := peerForwarder(t, testPeerURL, self, clusterSecret)
	owner := cluster.Peer{URL: self}
	for range 2 {
		d, err := fwd.HeadManifest(t.Context(), owner, "docker.io", "library/node", "10")
		if err != nil || d != img.Manifest.Digest {
			t.Fatalf("HeadManifest = %s, %v; want %s", d, err, img.Manifest.Digest)
		}
	}
	mediaType, data, d, err := fwd.GetManifest(t.Context(), owner, "docker.io", "library/node", img.Manifest.Digest.String())
	if err != nil || d != img.Manifest.Digest || digest.FromBytes(data) != d || mediaType != img.Manifest.MediaType {
		t.Fatalf("GetManifest = %q, %d bytes, %s, %v; want %q and the bytes of %s", mediaType, len(data), d, err, img.Manifest.MediaType, img.Manifest.Digest)
	}
	if heads, gets := hub.ManifestHeads("library/node", "10"), hub.ManifestGets("library/node", img.Manifest.Digest.String()); heads != 1 || gets != 1 {
		t.Errorf("the upstream saw %d HEADs of the tag and %d GETs of the manifest; want 1 and 1", heads, gets)
	}
}

// testPeerURL is the test's peer: it sends, never serves.
const testPeerURL = "http://127.0.0.1:9"

// startPrivateReplica runs a daemon in a cluster of two, the other the
// test's peer, in front of an upstream whose library/node:10 (one layer)
// only the daemon's credentials read and which is not exposed. logged
// returns what the daemon has logged so far.
func startPrivateReplica(t *testing.T) (hub *registrytest.Registry, img registrytest.Image, self string, logged func() string) {
	t.Helper()
	hub = registrytest.New(t, registrytest.Options{Username: "bot", Password: "hub-secret-password", Private: []string{"library/*"}})
	img, err := hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	hub.Reset()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self = "http://" + ln.Addr().String()
	cfg := Config{DataDir: t.TempDir(),
		Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL(), Username: "bot", Password: "hub-secret-password"}},
		Cluster:   ClusterConfig{Self: self, Peers: []string{self, testPeerURL}, SecretFile: writeClusterSecret(t, clusterSecret)},
	}.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	out := &syncWriter{w: &logs}
	startDaemonOn(t, ln, cfg, out)
	waitFor(t, self+"/healthz")
	// The daemon logs a request after answering it: read under its lock.
	logged = func() string {
		out.mu.Lock()
		defer out.mu.Unlock()
		return logs.String()
	}
	return hub, img, self, logged
}

func getStatus(t *testing.T, url string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// peerGetBlob reads library/node's blob d from the daemon at owner as the
// replica self would, signing with secret.
func peerGetBlob(t *testing.T, self, owner, secret string, d digest.Digest) ([]byte, error) {
	t.Helper()
	fwd := peerForwarder(t, self, owner, secret)
	body, _, _, err := fwd.GetBlob(t.Context(), cluster.Peer{URL: owner}, "docker.io", "library/node", d, 0)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}

// peerForwarder is the Forwarder of the replica self, in a cluster with
// owner, signing with secret.
func peerForwarder(t *testing.T, self, owner, secret string) *cluster.Forwarder {
	t.Helper()
	peers, err := cluster.New(cluster.Config{Self: self, URLs: []string{owner}})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := cluster.NewAuthenticator(cluster.AuthConfig{Secrets: cluster.Secrets{Current: []byte(secret)}})
	if err != nil {
		t.Fatal(err)
	}
	fwd := cluster.NewForwarder(peers, auth, cluster.ForwarderConfig{})
	t.Cleanup(fwd.CloseIdleConnections)
	return fwd
}

func isStatus(err error, code int) bool {
	var status *cluster.StatusError
	return errors.As(err, &status) && status.StatusCode == code
}

// REGMIRROR_CLUSTER_SELF gives each replica its own cluster.self while
// they share one config file (a Kubernetes pod sets it from its IP); it
// wins over the file, and --cluster-self over it, as for every setting.
// Not parallel: it sets the environment.
func TestConfigClusterSelfFromEnvironment(t *testing.T) {
	secret := writeClusterSecret(t, clusterSecret)
	shared := writeConfig(t, "cluster:\n  dns: regmirror-peers.regmirror.svc.cluster.local:5000\n  secret_file: "+secret+"\n")
	withSelf := writeConfig(t, "cluster:\n  self: http://10.9.9.9:5000\n  dns: regmirror-peers.regmirror.svc.cluster.local:5000\n  secret_file: "+secret+"\n")

	if code, _, stderr := runExit(t, "config", "check", "--quiet", "--config", shared); code != exitConfig || !strings.Contains(stderr, "self is required") {
		t.Fatalf("without self anywhere: exit %d, %q; want %d and self is required", code, stderr, exitConfig)
	}
	t.Setenv("REGMIRROR_CLUSTER_SELF", "http://10.1.2.3:5000")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"environment", []string{"--config", shared}, "http://10.1.2.3:5000"},
		{"environment over the file", []string{"--config", withSelf}, "http://10.1.2.3:5000"},
		{"flag over the environment", []string{"--config", withSelf, "--cluster-self", "http://10.4.5.6:5000"}, "http://10.4.5.6:5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runExit(t, append([]string{"config", "check"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "self: "+tc.want) {
				t.Errorf("effective configuration lacks self: %s:\n%s", tc.want, stdout)
			}
		})
	}
	t.Setenv("REGMIRROR_CLUSTER_SELF", "10.1.2.3:5000")
	if code, _, stderr := runExit(t, "config", "check", "--quiet", "--config", shared); code != exitConfig || !strings.Contains(stderr, "cluster.self") {
		t.Errorf("a self without a scheme from the environment: exit %d, %q; want %d naming cluster.self", code, stderr, exitConfig)
	}
}
