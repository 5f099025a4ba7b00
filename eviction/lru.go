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
}

// candidateKey tells candidates apart.
type candidateKey struct {
	digest   digest.Digest
	manifest bool
}

func (c Candidate) key() candidateKey { return candidateKey{c.Digest, c.Manifest} }

// ManifestCandidates makes eviction candidates of the cached manifests.
// Those that must stay are marked Keep: kept content, pinned repositories'
// manifests and their children, and every manifest that a cached index
// names, which goes only after its index, so that no cached index ever
// lacks a child. Size is the manifest's Size.
func ManifestCandidates(manifests []Manifest, pins Globs) []Candidate {
	byDigest := make(map[digest.Digest]*Manifest, len(manifests))
	named := make(map[digest.Digest]bool)
	for i := range manifests {
		m := &manifests[i]
		byDigest[m.Digest] = m
		for _, child := range m.Manifests {
			named[child] = true
		}
	}
	protected := protectedManifests(byDigest, pins)
	out := make([]Candidate, len(manifests))
	for i, m := range manifests {
		out[i] = Candidate{Digest: m.Digest, Manifest: true, Size: m.Size, LastAccess: m.LastAccess,
			Keep: protected[m.Digest] || named[m.Digest]}
	}
	return out
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
