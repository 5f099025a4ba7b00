package mirror_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/regmirror/regmirror/credentials"
	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// Replacing the remotes while a blob streams from the old upstream: the
// transfer completes with every byte and is cached, and new requests go to
// the new upstream with the new credentials.
func TestSetRemotesKeepsTransfersInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{private: true})
	oldImg, err := e.upstream.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 256 << 10, Seed: 20})
	if err != nil {
		t.Fatal(err)
	}
	layer := oldImg.Layers[0]
	stall := e.upstream.InjectFault(layer.Digest, registrytest.Fault{Kind: registrytest.Stall, Times: 1})
	t.Cleanup(stall.Release) // a failing test must not leave the download hanging

	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := e.mirror.Client().Get(e.mirror.URL + "/v2/library/node/blobs/" + layer.Digest.String())
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- result{body: body, err: err}
	}()
	<-stall.Hit() // half the layer has gone out; the download hangs upstream

	// The new configuration: another registry, other credentials.
	const newUser, newPassword = "rotated-bot", "rotated-password"
	next := registrytest.New(t, registrytest.Options{Username: newUser, Password: newPassword, Private: []string{"library/*"}})
	newImg, err := next.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 4 << 10, Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := credentials.New(credentials.Config{Static: map[string]credentials.Static{"docker.io": {Username: newUser, Password: newPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(upstream.Config{Host: "docker.io", URL: next.URL()}, keys, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	oldRequests := len(e.upstream.Requests())
	if err := e.m.SetRemotes([]mirror.Remote{{Host: "docker.io", Upstream: client}}, nil); err != nil {
		t.Fatal(err)
	}

	// A new pull is served by the new upstream, the old one is not asked.
	got := e.do(t, http.MethodGet, "/v2/library/node/manifests/10", nil)
	if got.status != http.StatusOK || !bytes.Equal(got.body, newImg.ManifestBytes) {
		t.Fatalf("GET node:10 after the reload = %d; want the new upstream's manifest", got.status)
	}
	e.expectBlob(t, "library/node", newImg.Layers[0])
	if n := len(e.upstream.Requests()); n != oldRequests {
		t.Errorf("the old upstream got %d requests after the reload", n-oldRequests)
	}

	// The transfer that started before the reload ends whole, and stays cached.
	stall.Release()
	res := <-done
	if res.err != nil || int64(len(res.body)) != layer.Size || sha256Digest(res.body) != layer.Digest {
		t.Fatalf("blob in flight during the reload: %d bytes, %v; want %d bytes of %s", len(res.body), res.err, layer.Size, layer.Digest)
	}
	rc, size, err := e.store.ReadBlob(context.Background(), layer.Digest, 0)
	if err != nil || size != layer.Size {
		t.Fatalf("blob downloaded across the reload is not cached: %d, %v", size, err)
	}
	rc.Close()
}

func TestSetRemotesRefusesAnInvalidTableAndKeepsTheOld(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 1024)
	if err := e.m.SetRemotes([]mirror.Remote{{Host: "docker.io"}}, nil); err == nil {
		t.Fatal("SetRemotes accepted a remote without an upstream")
	}
	if err := e.m.SetRemotes([]mirror.Remote{{Host: "docker.io", Upstream: stubUpstream{}}, {Host: "docker.io", Upstream: stubUpstream{}}}, nil); err == nil {
		t.Fatal("SetRemotes accepted a host twice")
	}
	e.pullIndex(t, "library/node", "10", ix) // still the original upstream
}

// stubUpstream is never called: it only fills a Remote that SetRemotes must refuse.
type stubUpstream struct{ mirror.Upstream }
