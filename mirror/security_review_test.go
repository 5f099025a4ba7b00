package mirror_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// A hostile upstream (or, with allow_any_upstream, any host a client
// names) starts the download of a digest that a public image holds, sends
// junk slowly and never finishes. A client pulling the public image
// through its own repository must get the blob from its own upstream:
// a download in flight for another repository, unverified, must neither
// be joined nor keep the honest repository from downloading.
func TestAttackHostileDownloadInFlightBlocksOtherRepositories(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t)
	public, err := e.hub.PushImage("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 60})
	if err != nil {
		t.Fatal(err)
	}
	layer := public.Layers[0]

	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseHostile := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseHostile)
	var hostile http.HandlerFunc = func(w http.ResponseWriter, r *http.Request) {
		// Claim the real size, send 16 KiB of junk, then hold the
		// download open until the test lets go.
		w.Header().Set("Content-Length", strconv.FormatInt(layer.Size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(bytes.Repeat([]byte{'x'}, 16<<10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	e.hostileBlob.Store(&hostile)

	attacker, err := e.server.Client().Get(e.server.URL + "/v2/" + hostileHost + "/x/y/blobs/" + layer.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Body.Close()
	if attacker.StatusCode != http.StatusOK {
		t.Fatalf("the attacker's download through %s = %d, want it in flight", hostileHost, attacker.StatusCode)
	}

	// The attacker's download is in flight now. An honest pull of the
	// public image's layer, through the repository that holds it upstream.
	victim, err := e.server.Client().Get(e.server.URL + "/v2/team/app/blobs/" + layer.Digest.String())
	releaseHostile() // the hostile download ends, unverified
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Body.Close()
	body, err := io.ReadAll(victim.Body)
	if victim.StatusCode != http.StatusOK || err != nil || sha256Digest(body) != layer.Digest {
		t.Fatalf("honest GET /v2/team/app/blobs/%s while %s's download of it is in flight = %d, %d bytes, read error %v: "+
			"the honest repository's pull was tied to the hostile upstream's download", layer.Digest, hostileHost, victim.StatusCode, len(body), err)
	}
}

// One host holds a whole IPv6 /64 (the login limits and the connection
// caps count it as one client). Inventing tags from a new address of its
// /64 for each request must not give it a fresh miss bucket each time.
func TestAttackMissLimitEvadedByAddressesOfOneIPv6Host(t *testing.T) {
	t.Parallel()
	const burst = 5
	e := newEnv(t, envOptions{missLimits: mirror.MissLimits{PerClientRate: 0.001, PerClientBurst: burst}})
	e.pushNode(t, 1, 1024)
	for i := range 4 * burst {
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v2/library/node/manifests/invented-%d", i), nil)
		req.RemoteAddr = fmt.Sprintf("[2001:db8:1:2::%x]:40000", i+1)
		rec := httptest.NewRecorder()
		e.m.ServeHTTP(rec, req)
	}
	asked := e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindManifest })
	if asked > burst {
		t.Fatalf("%d invented tags from %d addresses of one IPv6 /64 reached the upstream %d times, want at most the per-client burst %d",
			4*burst, 4*burst, asked, burst)
	}
}

// A tag listing is never cached and the upstream pages it: one listing
// the miss limits count once costs up to a thousand upstream requests.
// A client repeating it must not get past its miss burst more upstream
// requests than the burst allows.
func TestAttackTagListingsMultiplyUpstreamRequestsPastMissLimit(t *testing.T) {
	t.Parallel()
	const burst, tags = 3, 40
	e := newEnv(t, envOptions{tagsPageSize: 1, missLimits: mirror.MissLimits{PerClientRate: 0.001, PerClientBurst: burst}})
	ix := e.pushNode(t, 1, 1024)
	for i := range tags {
		if _, err := e.upstream.PutManifest("library/node", fmt.Sprintf("t%d", i), ix.Descriptor.MediaType, ix.Bytes); err != nil {
			t.Fatal(err)
		}
	}
	e.upstream.Reset()
	for range 2 * burst {
		e.do(t, http.MethodGet, "/v2/library/node/tags/list", nil)
	}
	asked := e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindTags })
	if asked > burst {
		t.Fatalf("%d tag listings with a miss burst of %d made %d upstream tag requests, want at most %d", 2*burst, burst, asked, burst)
	}
}

// A user's stored pushed bytes are capped, and hosted content is kept
// forever, beyond the cache's budget. Mounting a blob that the cache
// holds for a proxied repository (which anyone can make the mirror
// download) into a hosted repository keeps it just the same: it must
// count against the user's cap like an upload of it.
func TestAttackMountFromCacheEscapesStorageQuota(t *testing.T) {
	t.Parallel()
	hosting := teamsHosting()
	hosting.Uploads = mirror.UploadLimits{MaxStorage: 1 << 10}
	e := newAttackEnvHosting(t, hosting)
	public, err := e.hub.PushImage("team/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 61})
	if err != nil {
		t.Fatal(err)
	}
	layer := public.Layers[0]
	if got := e.do(t, http.MethodGet, "/v2/team/app/blobs/"+layer.Digest.String(), false); got.status != http.StatusOK {
		t.Fatalf("anonymous pull of the public layer = %d", got.status)
	}
	aliceAuth := basicAuth(alice, alicePassword)
	data, err := e.hub.Blob(layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	upload := e.send(t, http.MethodPost, "/v2/team-a/app/blobs/uploads/?digest="+layer.Digest.String(), data, aliceAuth)
	if upload.status != http.StatusForbidden {
		t.Fatalf("alice uploading %d bytes with a cap of 1 KiB = %d %s, want 403: the cap proves nothing", len(data), upload.status, upload.body)
	}
	mount := e.send(t, http.MethodPost, "/v2/team-a/app/blobs/uploads/?mount="+layer.Digest.String()+"&from=team/app", nil, aliceAuth)
	if mount.status == http.StatusCreated {
		t.Fatalf("alice mounted a %d-byte cached blob into team-a/app past her 1 KiB storage cap (201): it is kept forever, charged to nobody", layer.Size)
	}
}

// Pushed manifests are kept forever like pushed blobs, up to 4 MiB each,
// but nothing counts them: a user with a storage cap can still fill the
// disk with manifests that differ only in an annotation.
func TestAttackManifestsEscapeStorageQuota(t *testing.T) {
	t.Parallel()
	const limit, manifestSize, pushes = 64 << 10, 32 << 10, 8
	hosting := teamsHosting()
	hosting.Uploads = mirror.UploadLimits{MaxStorage: limit}
	e := newAttackEnvHosting(t, hosting)
	aliceAuth := basicAuth(alice, alicePassword)
	config := []byte("{}")
	configDigest := sha256Digest(config)
	if got := e.send(t, http.MethodPost, "/v2/team-a/app/blobs/uploads/?digest="+configDigest.String(), config, aliceAuth); got.status != http.StatusCreated {
		t.Fatalf("pushing a 2-byte config = %d %s", got.status, got.body)
	}
	header := basicAuth(alice, alicePassword)
	header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	accepted := 0
	for i := range pushes {
		padding := strings.Repeat(strconv.Itoa(i), manifestSize)
		manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[],`+
			`"annotations":{"padding":%q}}`, configDigest, len(config), padding)
		if got := e.send(t, http.MethodPut, fmt.Sprintf("/v2/team-a/app/manifests/m%d", i), []byte(manifest), header); got.status == http.StatusCreated {
			accepted++
		}
	}
	if stored := accepted * manifestSize; stored > limit {
		t.Fatalf("alice, capped at %d bytes, stored %d manifests of %d bytes (%d bytes, kept forever): manifests escape the storage cap",
			limit, accepted, manifestSize, stored)
	}
}
