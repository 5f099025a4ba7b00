package cluster_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// HeadManifest and GetManifest ask the owner for a tag with the types a
// registry client accepts, and return the digest, type and bytes it
// answers.
func TestManifestFromTheOwner(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	from, owner := rs[0], rs[1]
	data := []byte(`{"schemaVersion":2,"mediaType":"` + ociManifest + `"}`)
	d := digest.FromBytes(data)
	owner.put("10", data)
	owner.setAnswerHeaders(http.Header{"Docker-Content-Digest": {d.String()}, "Content-Type": {ociManifest}})

	got, err := from.fwd.HeadManifest(t.Context(), owner.peer(), "docker.io", "library/node", "10")
	if err != nil || got != d {
		t.Fatalf("HeadManifest = %s, %v; want %s", got, err, d)
	}
	mediaType, body, got, err := from.fwd.GetManifest(t.Context(), owner.peer(), "docker.io", "library/node", "10")
	if err != nil || mediaType != ociManifest || !bytes.Equal(body, data) || got != d {
		t.Fatalf("GetManifest = %q, %d bytes, %s, %v; want %q, %d bytes, %s", mediaType, len(body), got, err, ociManifest, len(data), d)
	}
	if accept := owner.lastHeaders().Get("Accept"); !strings.Contains(accept, "application/vnd.oci.image.index.v1+json") ||
		!strings.Contains(accept, "application/vnd.docker.distribution.manifest.list.v2+json") {
		t.Errorf("the owner saw Accept %q; want every manifest type", accept)
	}
}

// An answer the caller cannot record as a fresh confirmation of the tag,
// or cannot use at all, is an error for it to fall back on the upstream.
func TestManifestAnswersRefused(t *testing.T) {
	t.Parallel()
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	tests := []struct {
		name   string
		body   []byte
		header http.Header
		want   error
	}{
		{name: "served stale", body: data, want: cluster.ErrStaleAnswer,
			header: http.Header{"Docker-Content-Digest": {d.String()}, "Warning": {`110 - "Response is Stale"`}}},
		{name: "no digest", body: data, want: cluster.ErrBadManifestAnswer, header: http.Header{}},
		{name: "invalid digest", body: data, want: cluster.ErrBadManifestAnswer,
			header: http.Header{"Docker-Content-Digest": {"sha256:short"}}},
		{name: "too large", body: bytes.Repeat([]byte(" "), cluster.MaxManifestSize+1), want: cluster.ErrBadManifestAnswer,
			header: http.Header{"Docker-Content-Digest": {d.String()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := startCluster(t, newSecret, newSecret)
			from, owner := rs[0], rs[1]
			owner.put("10", tt.body)
			owner.setAnswerHeaders(tt.header)
			if _, _, _, err := from.fwd.GetManifest(t.Context(), owner.peer(), "docker.io", "library/node", "10"); !errors.Is(err, tt.want) {
				t.Errorf("GetManifest: %v; want %v", err, tt.want)
			}
			if tt.name == "too large" {
				return // HEAD sends no body
			}
			if _, err := from.fwd.HeadManifest(t.Context(), owner.peer(), "docker.io", "library/node", "10"); !errors.Is(err, tt.want) {
				t.Errorf("HeadManifest: %v; want %v", err, tt.want)
			}
		})
	}
}

// A peer's HEAD of a tag is signed: a replica with another secret refuses
// it before serving anything.
func TestHeadManifestRefusedByAnotherSecret(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, oldSecret)
	_, err := rs[0].fwd.HeadManifest(t.Context(), rs[1].peer(), "ghcr.io", "org/app", "v1")
	var status *cluster.StatusError
	if !errors.As(err, &status) || status.StatusCode != http.StatusUnauthorized {
		t.Fatalf("HEAD to a replica with another secret: %v; want its 401", err)
	}
	if rs[1].served.Load() != 0 {
		t.Errorf("the replica with another secret served %d requests", rs[1].served.Load())
	}
}
