package mirror_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// Writes never reach a name the mirror proxies: a push by a valid user to a
// name routed to an upstream, however it is spelled (another registry by
// host prefix or ns, Docker Hub's short names, case or escapes), is
// refused before anything is stored or sent upstream; only the configured
// hosted names take pushes. The proxied image is still served unchanged.
func TestWritesNeverReachProxiedNames(t *testing.T) {
	t.Parallel()
	e := newHostedEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, AllowDelete: true})
	img, err := e.hub.PushImage("library/node", "10", registrytest.ImageOptions{Layers: 1, LayerSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	e.hub.Reset()
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + img.Config.Digest.String() + `","size":1},"layers":[]}`)
	mt := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	tests := []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/v2/library/node/blobs/uploads/", http.StatusForbidden},
		{http.MethodPost, "/v2/node/blobs/uploads/", http.StatusForbidden},
		{http.MethodPut, "/v2/library/node/manifests/10", http.StatusForbidden},
		{http.MethodPut, "/v2/node/manifests/10", http.StatusForbidden},
		{http.MethodDelete, "/v2/library/node/manifests/10", http.StatusForbidden},
		{http.MethodPut, "/v2/docker.io/library/node/manifests/10", http.StatusForbidden},
		{http.MethodPut, "/v2/ghcr.io/team/app/manifests/1", http.StatusForbidden},
		{http.MethodPost, "/v2/ghcr.io/team/app/blobs/uploads/", http.StatusForbidden},
		{http.MethodPut, "/v2/team/app/manifests/1?ns=ghcr.io", http.StatusForbidden},
		{http.MethodPost, "/v2/team/app/blobs/uploads/?ns=quay.io", http.StatusForbidden},
		{http.MethodPut, "/v2/Team/app/manifests/1", http.StatusBadRequest},
		{http.MethodPut, "/v2/team%2Fapp/manifests/1", http.StatusBadRequest},
		{http.MethodPut, "/v2/team/%2e%2e/library/node/manifests/10", http.StatusBadRequest},
		{http.MethodPut, "/v2/team/../library/node/manifests/10", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			got := e.send(t, tt.method, tt.path, bytes.NewReader(manifest), mt, pushUser, pushPassword)
			if got.status != tt.status {
				t.Fatalf("status %d %s, want %d", got.status, got.body, tt.status)
			}
		})
	}
	t.Run("the hosted name takes the push", func(t *testing.T) {
		t.Parallel()
		// Refused for a missing config blob, not for the name: the write reached the hosted store.
		got := e.send(t, http.MethodPut, "/v2/team/app/manifests/1", bytes.NewReader(manifest), mt, pushUser, pushPassword)
		if got.status == http.StatusForbidden {
			t.Fatalf("a push to the hosted name was refused: %s", got.body)
		}
	})
	t.Cleanup(func() {
		if n := len(e.hub.Requests()); n != 0 {
			t.Errorf("refused writes made %d upstream requests", n)
		}
		hosted, err := e.hosted.Repositories(context.Background())
		if err != nil || len(hosted) != 0 {
			t.Errorf("hosted repositories after refused writes: %v, %v; want none", hosted, err)
		}
		got := e.send(t, http.MethodGet, "/v2/library/node/manifests/10", nil, nil, "", "")
		if got.status != http.StatusOK || got.header.Get("Docker-Content-Digest") != img.Manifest.Digest.String() {
			t.Errorf("the proxied image after the refused writes: %d, digest %q", got.status, got.header.Get("Docker-Content-Digest"))
		}
	})
}
