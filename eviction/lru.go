package eviction

import (
	"cmp"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Candidate is a blob that eviction may remove.
type Candidate struct {
	Digest     digest.Digest
	Size       int64
	LastAccess time.Time
	// Keep marks a blob that must stay: in use, hosted, or pinned.
	Keep bool
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
