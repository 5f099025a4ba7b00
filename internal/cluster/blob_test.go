package cluster_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/cluster"
)

func TestGetBlobReadsFromTheOwnerWithNsAndOffset(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	from, owner := rs[0], rs[1]
	blob := randomBlob(1 << 20)
	d := digest.FromBytes(blob)
	owner.put(d.String(), blob)

	tests := []struct {
		name      string
		offset    int64
		wantStart int64
		wantRange string
	}{
		{name: "whole", offset: 0, wantStart: 0, wantRange: ""},
		{name: "resumed", offset: 12345, wantStart: 12345, wantRange: "bytes=12345-"},
	}
	for _, tt := range tests {
		body, start, size, err := from.fwd.GetBlob(t.Context(), owner.peer(), "docker.io", "library/node", d, tt.offset)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if start != tt.wantStart || size != int64(len(blob)) || string(got) != string(blob[tt.offset:]) {
			t.Errorf("%s: start %d size %d, %d bytes; want %d, %d, %d", tt.name, start, size, len(got), tt.wantStart, len(blob), len(blob)-int(tt.offset))
		}
		if r := owner.lastHeaders().Get("Range"); r != tt.wantRange {
			t.Errorf("%s: the owner saw Range %q; want %q", tt.name, r, tt.wantRange)
		}
	}
}

// A peer that does not hold the blob answers 404, and GetBlob reports it
// as the owner's status, for the caller to fall back on the upstream.
func TestGetBlobReportsTheOwnersStatus(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, newSecret, newSecret)
	_, _, _, err := rs[0].fwd.GetBlob(t.Context(), rs[1].peer(), "docker.io", "library/node", digest.FromString("absent"), 0)
	var status *cluster.StatusError
	if !errors.As(err, &status) || status.StatusCode != http.StatusNotFound {
		t.Fatalf("GetBlob of an absent blob: %v; want the owner's 404", err)
	}
}

// A replica with another secret is refused (401), never served.
func TestGetBlobWithTheWrongSecretIsRefused(t *testing.T) {
	t.Parallel()
	rs := startCluster(t, oldSecret, newSecret)
	blob := randomBlob(1024)
	d := digest.FromBytes(blob)
	rs[1].put(d.String(), blob)
	_, _, _, err := rs[0].fwd.GetBlob(t.Context(), rs[1].peer(), "docker.io", "library/node", d, 0)
	var status *cluster.StatusError
	if !errors.As(err, &status) || status.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GetBlob with the wrong secret: %v; want the owner's 401", err)
	}
	if rs[1].served.Load() != 0 {
		t.Errorf("the owner served %d requests signed with another secret", rs[1].served.Load())
	}
}
