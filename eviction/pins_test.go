package eviction

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestParsePin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, repo, tag string
		platforms     []string
		wantErr       bool
	}{
		{in: "library/node", repo: "library/node"},
		{in: "library/node:20*", repo: "library/node", tag: "20*"},
		{in: "localhost:5000/team/**", repo: "localhost:5000/team/**"},
		{in: "registry.k8s.io/kube-apiserver:v1.31.*", repo: "registry.k8s.io/kube-apiserver", tag: "v1.31.*"},
		{in: "library/node:20", platforms: []string{"linux/arm/v7"}, repo: "library/node", tag: "20"},
		{in: "library/node:", wantErr: true},
		{in: "library/[:1", wantErr: true},
		{in: "library/node:[", wantErr: true},
		{in: "library/node", platforms: []string{"linux"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			p, err := ParsePin(tt.in, tt.platforms...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePin(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && (p.Repo != tt.repo || p.Tag != tt.tag) {
				t.Fatalf("ParsePin(%q) = %+v, want repo %q tag %q", tt.in, p, tt.repo, tt.tag)
			}
		})
	}
}

// pinFixture is a cache holding a two-platform node:20 index, node:18, and
// a team image two levels deep.
func pinFixture() Inventory {
	d := digest.FromString
	node := "docker.io/library/node"
	return Inventory{
		Blobs: []Blob{
			{Digest: d("amd64 layer"), Size: 100}, {Digest: d("arm64 layer"), Size: 200},
			{Digest: d("node18 layer"), Size: 300}, {Digest: d("team layer"), Size: 400},
			{Digest: d("loose"), Size: 500},
		},
		Manifests: []Manifest{
			{Digest: d("index 20"), Size: 10, Repos: []string{node}, Tags: []RepoTag{{node, "20"}, {node, "20.1"}},
				Manifests: []digest.Digest{d("amd64"), d("arm64")}, Platforms: []string{"linux/amd64", "linux/arm64"}},
			{Digest: d("amd64"), Size: 1, Repos: []string{node}, Blobs: []digest.Digest{d("amd64 layer")}},
			{Digest: d("arm64"), Size: 2, Repos: []string{node}, Blobs: []digest.Digest{d("arm64 layer")}},
			{Digest: d("node 18"), Size: 3, Repos: []string{node}, Tags: []RepoTag{{node, "18"}}, Blobs: []digest.Digest{d("node18 layer")}},
			{Digest: d("team"), Size: 4, Repos: []string{"ghcr.io/team/app/api"}, Blobs: []digest.Digest{d("team layer")}},
		},
	}
}

func TestCandidatesKeepPinnedImagesWithTheirBlobs(t *testing.T) {
	t.Parallel()
	d := digest.FromString
	tests := []struct {
		name       string
		pins       Pins
		wantPinned []string
	}{
		{name: "no pins"},
		{name: "tag pattern: the whole index", pins: Pins{{Repo: "library/node", Tag: "20*"}},
			wantPinned: []string{"index 20", "amd64", "arm64", "amd64 layer", "arm64 layer"}},
		{name: "tag pattern that no cached tag matches", pins: Pins{{Repo: "library/node", Tag: "22*"}}},
		{name: "repository: every tag", pins: Pins{{Repo: "docker.io/library/*"}},
			wantPinned: []string{"index 20", "amd64", "arm64", "amd64 layer", "arm64 layer", "node 18", "node18 layer"}},
		{name: "named platforms only", pins: Pins{{Repo: "library/node", Tag: "20", Platforms: []string{"linux/arm64"}}},
			wantPinned: []string{"index 20", "arm64", "arm64 layer"}},
		{name: "a pin of all platforms wins over one of some", pins: Pins{
			{Repo: "library/node", Tag: "20", Platforms: []string{"linux/arm64"}}, {Repo: "library/node", Tag: "20.1"}},
			wantPinned: []string{"index 20", "amd64", "arm64", "amd64 layer", "arm64 layer"}},
		{name: "** crosses components", pins: Pins{{Repo: "ghcr.io/team/**"}},
			wantPinned: []string{"team", "team layer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := map[digest.Digest]bool{}
			for _, name := range tt.wantPinned {
				want[d(name)] = true
			}
			for _, c := range Candidates(pinFixture(), tt.pins) {
				if c.Pinned != want[c.Digest] {
					t.Errorf("%s (manifest %v): Pinned = %v, want %v", c.Digest, c.Manifest, c.Pinned, want[c.Digest])
				}
				if c.Pinned && !c.Keep {
					t.Errorf("%s is pinned but not kept", c.Digest)
				}
				if !c.Manifest && c.Keep && !c.Pinned {
					t.Errorf("blob %s kept without a pin", c.Digest)
				}
			}
		})
	}
}

func TestPruneSparesPinnedBlobs(t *testing.T) {
	t.Parallel()
	plan, err := PlanPrune(pinFixture(), PruneOptions{MaxSize: 1, Pins: Pins{{Repo: "library/node", Tag: "20"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, pinnedBlobs := pinnedContent(pinFixture().Manifests, Pins{{Repo: "library/node", Tag: "20"}})
	for _, b := range plan.Blobs {
		if pinnedBlobs[b.Digest] {
			t.Errorf("prune removes pinned blob %s", b.Digest)
		}
	}
	if len(plan.Blobs) != 3 {
		t.Errorf("prune removes %d blobs, want the 3 unpinned ones", len(plan.Blobs))
	}
}

// fixedCache is a Cache of fixed candidates that records what goes.
type fixedCache struct {
	candidates []Candidate
	removed    []Candidate
}

func (c *fixedCache) Usage() int64 {
	var n int64
	for _, x := range c.candidates {
		n += x.Size
	}
	return n
}

func (c *fixedCache) Candidates(context.Context) ([]Candidate, error) { return c.candidates, nil }

func (c *fixedCache) Remove(_ context.Context, victims []Candidate) (int, int64, error) {
	var freed int64
	for _, v := range victims {
		freed += v.Size
		c.removed = append(c.removed, v)
	}
	return len(victims), freed, nil
}

// Pins alone above the budget: every unpinned blob goes, no pinned byte
// does, and the evictor says so in its metric.
func TestEvictionWithPinsOverBudget(t *testing.T) {
	t.Parallel()
	c := &fixedCache{candidates: Candidates(pinFixture(), Pins{{Repo: "library/node"}})}
	for i := range c.candidates {
		c.candidates[i].LastAccess = time.Unix(int64(i), 0)
	}
	reg := prometheus.NewRegistry()
	ev, err := New(c, Config{MaxSize: 400}, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ev.Evict(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !p.PinsOver || p.Pinned != 600+10+1+2+3 {
		t.Fatalf("pass = %+v, want pins over budget with 616 pinned bytes", p)
	}
	gone := map[digest.Digest]bool{}
	for _, v := range c.removed {
		if v.Pinned || v.Keep {
			t.Errorf("evicted kept content %s", v.Digest)
		}
		gone[v.Digest] = true
	}
	for _, name := range []string{"team layer", "loose", "team"} {
		if !gone[digest.FromString(name)] {
			t.Errorf("unpinned %q stayed", name)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		got[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	if got["regmirror_cache_pins_over_budget"] != 1 || got["regmirror_cache_pinned_bytes"] != 616 {
		t.Errorf("pins over budget = %v, pinned bytes = %v; want 1 and 616",
			got["regmirror_cache_pins_over_budget"], got["regmirror_cache_pinned_bytes"])
	}
}

// pinnedContent returns the manifests that pins protect and the blobs those
// manifests name; content kept for other reasons (hosted) is not included.
func pinnedContent(manifests []Manifest, pins Pins) (pinned, blobs map[digest.Digest]bool) {
	byDigest := make(map[digest.Digest]*Manifest, len(manifests))
	for i := range manifests {
		byDigest[manifests[i].Digest] = &manifests[i]
	}
	pinned = pinnedManifests(byDigest, pins)
	return pinned, blobsOf(byDigest, pinned)
}
