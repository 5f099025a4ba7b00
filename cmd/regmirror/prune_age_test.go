package main

import (
	"context"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/internal/admin"
)

// TestPruneOlderThanZeroMeansEverything: `cache prune --older-than 0s` is
// an age like any other, the one that takes everything; it must not read
// as "no criterion given". A negative age is refused.
func TestPruneOlderThanZeroMeansEverything(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	store, err := cache.Open(context.Background(), cache.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	manifest := []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","layers":[]}`)
	d, err := store.PutManifest(context.Background(), "docker.io/library/app", ocispec.MediaTypeImageManifest, manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	dry := cliJSON[admin.PruneReport](t, "cache", "prune", "--data-dir", dir, "--older-than", "0s", "--dry-run")
	if len(dry.Manifests) != 1 || dry.Manifests[0].Digest != d {
		t.Fatalf("--older-than 0s --dry-run = %+v, want the one manifest %s", dry, d)
	}
	pruned := cliJSON[admin.PruneReport](t, "cache", "prune", "--data-dir", dir, "--older-than", "0s")
	assertSamePrune(t, dry, pruned)
	if st := cliJSON[admin.StatsReport](t, "cache", "stats", "--data-dir", dir); st.Manifests != 0 {
		t.Errorf("after --older-than 0s: %d manifests, want 0", st.Manifests)
	}

	refusals := []struct {
		args []string
		want string
	}{
		{nil, "say what to prune"},
		{[]string{"--older-than", "-1h"}, "must not be negative"},
	}
	for _, tt := range refusals {
		_, _, err := runCLI(t, append([]string{"cache", "prune", "--data-dir", dir}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("cache prune %v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}
