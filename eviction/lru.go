package eviction

import (
	"cmp"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Candidate is a blob or a manifest that eviction may remove.
type Candidate struct {
	Digest digest.Digest
	// Manifest tells a manifest from a blob: one digest may name both.
	Manifest bool
	// Size is what the content counts against the budget.
	Size       int64
	LastAccess time.Time
	// Keep marks content that must stay: in use, hosted, or pinned.
	Keep bool
	// Pinned marks content a pin keeps (Keep is set too): what the budget
	// must leave room for.
	Pinned bool
}

// candidateKey tells candidates apart.
type candidateKey struct {
	digest   digest.Digest
	manifest bool
}

func (c Candidate) key() candidateKey { return candidateKey{c.Digest, c.Manifest} }

// Candidates makes eviction candidates of the cached blobs and manifests.
// Those that must stay are marked Keep: kept content; pinned images, that is
// their manifests, their children (of the pinned platforms) and every blob
// those name, which are marked Pinned too; and every manifest that a cached
// index names, which goes only after its index, so that no cached index
// ever lacks a child. A manifest's Size is its Manifest.Size.
func Candidates(inv Inventory, pins Pins) []Candidate {
	byDigest := make(map[digest.Digest]*Manifest, len(inv.Manifests))
	named := make(map[digest.Digest]bool)
	for i := range inv.Manifests {
		m := &inv.Manifests[i]
		byDigest[m.Digest] = m
		for _, child := range m.Manifests {
			named[child] = true
		}
	}
	pinned := pinnedManifests(byDigest, pins)
	pinnedBlobs := blobsOf(byDigest, pinned)
	protected := protectedManifests(byDigest, pinned)
	out := make([]Candidate, 0, len(inv.Blobs)+len(inv.Manifests))
	for _, b := range inv.Blobs {
		out = append(out, Candidate{Digest: b.Digest, Size: b.Size, LastAccess: b.LastAccess,
			Keep: b.Kept || pinnedBlobs[b.Digest], Pinned: pinnedBlobs[b.Digest]})
	}
	for _, m := range inv.Manifests {
		out = append(out, Candidate{Digest: m.Digest, Manifest: true, Size: m.Size, LastAccess: m.LastAccess,
			Keep: protected[m.Digest] || named[m.Digest], Pinned: pinned[m.Digest]})
	}
	return out
}

// pinnedBytes is what the pinned candidates take.
func pinnedBytes(candidates []Candidate) int64 {
	var n int64
	for _, c := range candidates {
		if c.Pinned {
			n += c.Size
		}
	}
	return n
}

// Select returns the candidates to remove, least recently used first, so
// that usage drops to target or below. It returns nothing when usage is
// already within target, and as much as it can when kept blobs make target
// unreachable. Ties in access time go to the larger blob, which frees more.
func Select(candidates []Candidate, usage, target int64) []Candidate {
	if usage <= target {
		return nil
	}
	order := slices.Clone(candidates)
	slices.SortFunc(order, func(a, b Candidate) int {
		if c := a.LastAccess.Compare(b.LastAccess); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Size, a.Size); c != 0 {
			return c
		}
		return cmp.Compare(a.Digest, b.Digest)
	})
	var victims []Candidate
	for _, c := range order {
		if usage <= target {
			break
		}
		if c.Keep {
			continue
		}
		victims = append(victims, c)
		usage -= c.Size
	}
	return victims
}
