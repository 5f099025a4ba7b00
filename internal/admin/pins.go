package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/eviction"
)

// pinInventory is the eviction package's view of inv: with each manifest's
// tags, and the platforms of the children of the indexes that a pin of
// some platforms may select, read from the cached index.
func pinInventory(ctx context.Context, store *cache.Store, inv cache.Inventory, pins eviction.Pins) (eviction.Inventory, error) {
	out := pruneInventory(inv)
	tags := make(map[digest.Digest][]eviction.RepoTag)
	for _, t := range inv.Tags {
		tags[t.Digest] = append(tags[t.Digest], eviction.RepoTag{Repo: t.Repo, Tag: t.Tag})
	}
	var byPlatform eviction.Globs
	for _, p := range pins {
		if len(p.Platforms) > 0 {
			byPlatform = append(byPlatform, p.Repo)
		}
	}
	for i := range out.Manifests {
		m := &out.Manifests[i]
		m.Tags = tags[m.Digest]
		if len(m.Manifests) == 0 || !byPlatform.MatchAny(m.Repos) {
			continue
		}
		platforms, err := childPlatforms(ctx, store, m.Digest)
		if err != nil {
			return out, err
		}
		m.Platforms = platforms
	}
	return out, nil
}

// childPlatforms reads an index's children's platforms, "os/arch[/variant]"
// in the order of its manifests.
func childPlatforms(ctx context.Context, store *cache.Store, d digest.Digest) ([]string, error) {
	_, data, err := store.Manifest(ctx, d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // removed since the inventory was read
	}
	if err != nil {
		return nil, err
	}
	var index ocispec.Index
	if json.Unmarshal(data, &index) != nil {
		return nil, nil
	}
	platforms := make([]string, len(index.Manifests))
	for i, c := range index.Manifests {
		platforms[i] = PlatformString(c.Platform)
	}
	return platforms, nil
}

// PlatformString writes p as "os/arch" or "os/arch/variant"; "" for none.
func PlatformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	return strings.Join(nonEmpty(p.OS, p.Architecture, p.Variant), "/")
}

func nonEmpty(parts ...string) []string {
	out := parts[:0]
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
