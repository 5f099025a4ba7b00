package mirror_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/regmirror/regmirror/mirror"
)

func TestRecentPullsListsManifestAndBlobReadsNewestFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 2048)
	layer := ix.Images[0].Layers[0]

	e.do(t, http.MethodGet, "/v2/", nil) // a ping is not a pull
	// A blob's last bytes can reach the client before its handler returns
	// (sendfile writes straight to the socket): wait for each to be recorded.
	e.expectBlob(t, "library/node", layer)
	waitFor(t, "the cold read to be recorded", func() bool { return len(e.m.RecentPulls()) == 1 })
	e.clock.Advance(1)
	e.expectBlob(t, "library/node", layer)
	waitFor(t, "the warm read to be recorded", func() bool { return len(e.m.RecentPulls()) == 2 })
	e.clock.Advance(1)
	if got := e.do(t, http.MethodHead, "/v2/node/manifests/10", nil); got.status != http.StatusOK {
		t.Fatalf("HEAD tag = %d", got.status)
	}

	blob := mirror.Pull{Method: http.MethodGet, Kind: "blob", Upstream: "docker.io", Repository: "library/node",
		Reference: layer.Digest.String(), Status: http.StatusOK, Bytes: layer.Size}
	coldBlob, warmBlob := blob, blob
	coldBlob.Cache, warmBlob.Cache = "miss", "hit"
	want := []mirror.Pull{
		{Method: http.MethodHead, Kind: "manifest", Upstream: "docker.io", Repository: "library/node",
			Reference: "10", Cache: "miss", Status: http.StatusOK},
		warmBlob,
		coldBlob,
	}
	got := e.m.RecentPulls()
	for i := 1; i < len(got); i++ {
		if !got[i].Time.Before(got[i-1].Time) {
			t.Errorf("entry %d (%v) is not older than entry %d (%v)", i, got[i].Time, i-1, got[i-1].Time)
		}
	}
	for i := range got {
		got[i].Time, got[i].Duration = time.Time{}, 0
	}
	if len(got) != len(want) {
		t.Fatalf("RecentPulls = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("RecentPulls[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestRecentPullsIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ix := e.pushNode(t, 1, 512)
	layer := ix.Images[0].Layers[0]
	for range mirror.RecentPullsKept + 7 {
		e.expectBlob(t, "library/node", layer)
	}
	pulls := e.m.RecentPulls()
	if len(pulls) != mirror.RecentPullsKept {
		t.Fatalf("RecentPulls has %d entries, want the bound %d", len(pulls), mirror.RecentPullsKept)
	}
	if oldest := pulls[len(pulls)-1]; oldest.Cache != "hit" {
		t.Fatalf("oldest kept entry is a %q; the cold miss should have been dropped", oldest.Cache)
	}
}
