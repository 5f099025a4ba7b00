package eviction

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestPlanPrune(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	daysAgo := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
	blob := func(name string, size int64, days int, repos ...string) Blob {
		return Blob{Digest: digest.FromString(name), Size: size, LastAccess: daysAgo(days), Repos: repos}
	}
	manifest := func(name string, days int, repo string, blobs ...Blob) Manifest {
		m := Manifest{Digest: digest.FromString(name), LastAccess: daysAgo(days), Repos: []string{repo}}
		for _, b := range blobs {
			m.Blobs = append(m.Blobs, b.Digest)
		}
		return m
	}
	const (
		node   = "docker.io/library/node"
		python = "docker.io/library/python"
		team   = "ghcr.io/team/app"
	)
	base := blob("base", 100, 40, node, python) // a layer both images share
	nodeLayer := blob("node-layer", 300, 40, node)
	pyLayer := blob("py-layer", 200, 2, python)
	teamLayer := blob("team-layer", 50, 60, team)
	loose := blob("loose", 10, 90, node) // no manifest names it
	nodeImg := manifest("node:10", 40, node, base, nodeLayer)
	pyImg := manifest("python:3", 1, python, base, pyLayer)
	teamImg := manifest("team:1", 60, team, teamLayer)
	inv := Inventory{
		Blobs:     []Blob{base, nodeLayer, pyLayer, teamLayer, loose},
		Manifests: []Manifest{nodeImg, pyImg, teamImg},
	}
	kept := inv
	kept.Manifests = slices.Clone(inv.Manifests)
	kept.Manifests[2].Kept = true // hosted

	tests := []struct {
		name          string
		inv           Inventory
		opts          PruneOptions
		wantManifests []Manifest
		wantBlobs     []Blob
		wantShared    int
	}{
		{
			name:          "older than: old images go, a shared layer stays",
			inv:           inv,
			opts:          PruneOptions{OlderThan: new(30 * 24 * time.Hour)},
			wantManifests: []Manifest{teamImg, nodeImg},
			wantBlobs:     []Blob{loose, teamLayer, nodeLayer},
			wantShared:    1,
		},
		{
			name:          "repository filter alone removes all of it",
			inv:           inv,
			opts:          PruneOptions{Repos: Globs{"library/python"}},
			wantManifests: []Manifest{pyImg},
			wantBlobs:     []Blob{pyLayer},
			wantShared:    1,
		},
		{
			name:          "repository filter: ** crosses /",
			inv:           inv,
			opts:          PruneOptions{Repos: Globs{"ghcr.io/**"}},
			wantManifests: []Manifest{teamImg},
			wantBlobs:     []Blob{teamLayer},
		},
		{
			name: "repository filter: * stays within one component",
			inv:  inv,
			opts: PruneOptions{Repos: Globs{"ghcr.io/*"}},
		},
		{
			name:          "repository and age",
			inv:           inv,
			opts:          PruneOptions{Repos: Globs{"docker.io/library/*"}, OlderThan: new(30 * 24 * time.Hour)},
			wantManifests: []Manifest{nodeImg},
			wantBlobs:     []Blob{loose, nodeLayer},
			wantShared:    1,
		},
		{
			name:          "max size: least recently used images first",
			inv:           inv,
			opts:          PruneOptions{MaxSize: 350},
			wantManifests: []Manifest{teamImg, nodeImg},
			wantBlobs:     []Blob{loose, teamLayer, nodeLayer},
			wantShared:    1,
		},
		{
			name:          "kept content never goes",
			inv:           kept,
			opts:          PruneOptions{OlderThan: new(30 * 24 * time.Hour)},
			wantManifests: []Manifest{nodeImg},
			wantBlobs:     []Blob{loose, nodeLayer},
			wantShared:    1,
		},
		{
			name:          "pinned repositories keep their manifests and so their blobs",
			inv:           inv,
			opts:          PruneOptions{OlderThan: new(30 * 24 * time.Hour), Pins: Pins{{Repo: "library/node"}}},
			wantManifests: []Manifest{teamImg},
			wantBlobs:     []Blob{loose, teamLayer},
		},
		{
			name:          "an age of zero is everything",
			inv:           inv,
			opts:          PruneOptions{OlderThan: new(time.Duration(0))},
			wantManifests: []Manifest{teamImg, nodeImg, pyImg},
			wantBlobs:     []Blob{loose, teamLayer, nodeLayer, base, pyLayer},
		},
		{
			name: "nothing old enough",
			inv:  inv,
			opts: PruneOptions{OlderThan: new(365 * 24 * time.Hour)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Now = now
			plan, err := PlanPrune(tt.inv, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := manifestNames(plan.Manifests), manifestNames(tt.wantManifests); !slices.Equal(got, want) {
				t.Errorf("manifests = %v, want %v", got, want)
			}
			if got, want := blobNames(plan.Blobs), blobNames(tt.wantBlobs); !slices.Equal(got, want) {
				t.Errorf("blobs = %v, want %v", got, want)
			}
			var bytes int64
			for _, b := range tt.wantBlobs {
				bytes += b.Size
			}
			if plan.Bytes != bytes || plan.Shared != tt.wantShared {
				t.Errorf("bytes %d, shared %d; want %d, %d", plan.Bytes, plan.Shared, bytes, tt.wantShared)
			}
		})
	}
}

func TestPlanPruneNeedsACriterion(t *testing.T) {
	t.Parallel()
	if _, err := PlanPrune(Inventory{}, PruneOptions{Pins: Pins{{Repo: "*"}}}); !errors.Is(err, ErrNoCriterion) {
		t.Errorf("err = %v, want ErrNoCriterion", err)
	}
}

// TestPlanPruneAgeZeroTakesWhatWasJustUsed: `--older-than 0s` means "not
// used since now", which is everything, and a negative age is refused.
func TestPlanPruneAgeZeroTakesWhatWasJustUsed(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	layer := Blob{Digest: digest.FromString("layer"), Size: 10, LastAccess: now, Repos: []string{"docker.io/library/node"}}
	img := Manifest{Digest: digest.FromString("img"), LastAccess: now, Repos: []string{"docker.io/library/node"}, Blobs: []digest.Digest{layer.Digest}}
	inv := Inventory{Blobs: []Blob{layer}, Manifests: []Manifest{img}}
	plan, err := PlanPrune(inv, PruneOptions{OlderThan: new(time.Duration(0)), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Manifests) != 1 || len(plan.Blobs) != 1 || plan.Bytes != 10 {
		t.Errorf("plan = %+v, want the image and its layer", plan)
	}
	if _, err := PlanPrune(inv, PruneOptions{OlderThan: new(-time.Second), Now: now}); !errors.Is(err, ErrNegativeAge) {
		t.Errorf("a negative age: err = %v, want ErrNegativeAge", err)
	}
}

func TestPlanPruneSparesPinnedIndexChildren(t *testing.T) {
	t.Parallel()
	layer := Blob{Digest: digest.FromString("layer"), Size: 10, Repos: []string{"docker.io/library/node"}}
	child := Manifest{Digest: digest.FromString("child"), Repos: []string{"docker.io/library/node"}, Blobs: []digest.Digest{layer.Digest}}
	index := Manifest{Digest: digest.FromString("index"), Repos: []string{"docker.io/library/node"}, Manifests: []digest.Digest{child.Digest}, Kept: true}
	plan, err := PlanPrune(Inventory{Blobs: []Blob{layer}, Manifests: []Manifest{child, index}}, PruneOptions{MaxSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Manifests) != 0 || len(plan.Blobs) != 0 {
		t.Errorf("plan = %+v, want nothing: the kept index protects its child and its layer", plan)
	}
}

func TestGlobs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, repo string
		want          bool
	}{
		{"library/*", "docker.io/library/node", true},
		{"docker.io/library/*", "docker.io/library/node", true},
		{"library/*", "docker.io/library/node/sub", false},
		{"*", "docker.io/library/node", false},
		{"ghcr.io/*/*", "ghcr.io/team/app", true},
		{"team/app", "ghcr.io/team/app", true},
		{"node", "docker.io/library/node", false},
		{"myorg/**", "docker.io/myorg/a/b", true},
		{"myorg/**", "docker.io/myorg", true},
		{"myorg/*", "docker.io/myorg/a/b", false},
		{"ghcr.io/**/api", "ghcr.io/team/app/api", true},
	}
	for _, tt := range tests {
		if got := (Globs{tt.pattern}).Match(tt.repo); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.repo, got, tt.want)
		}
	}
	if _, err := ParseGlobs([]string{"team/["}); err == nil {
		t.Error("ParseGlobs accepted a malformed pattern")
	}
}

func manifestNames(ms []Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Digest.Encoded()[:8])
	}
	return out
}

func blobNames(bs []Blob) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Digest.Encoded()[:8])
	}
	return out
}
