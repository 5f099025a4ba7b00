package eviction

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Blob is a cached blob as pruning sees it.
type Blob struct {
	Digest     digest.Digest
	Size       int64
	LastAccess time.Time
	Kept       bool     // must stay whatever happens (hosted content)
	Repos      []string // repositories known to use it
}

// Manifest is a cached manifest as pruning and eviction see it.
type Manifest struct {
	Digest digest.Digest
	// Size is what the manifest counts against the cache budget, with the
	// index rows (tags) that go with it.
	Size       int64
	LastAccess time.Time
	Kept       bool     // must stay whatever happens (hosted content)
	Repos      []string // repositories known to use it
	// Tags are the cached tags that point to the manifest.
	Tags      []RepoTag
	Blobs     []digest.Digest
	Manifests []digest.Digest // an index's children
	// Platforms are the children's platforms, in the order of Manifests
	// ("linux/arm64", "linux/arm/v7"); "" or missing when unknown.
	Platforms []string
}

// Inventory is what pruning plans on: every cached blob and manifest.
type Inventory struct {
	Blobs     []Blob
	Manifests []Manifest
}

// PruneOptions select what a prune removes. The zero value of each field
// means "no such criterion"; at least one must be given.
type PruneOptions struct {
	// MaxSize removes the least recently used images until the blobs take at
	// most this many bytes.
	MaxSize int64
	// OlderThan, when set, removes images not used for this long, as of
	// Now. Zero is an age like any other: everything not used since Now,
	// which is everything. A pointer, because "no age given" and "0s"
	// must not be confused.
	OlderThan *time.Duration
	Now       time.Time
	// Repos limits the prune to content whose repositories all match; with
	// no other criterion, all of it goes.
	Repos Globs
	// Pins are the images whose manifests (and so their blobs) are never
	// removed.
	Pins Pins
}

// Plan is what a prune removes. Manifests go first, then the blobs that no
// remaining manifest names.
type Plan struct {
	Manifests []Manifest
	Blobs     []Blob
	Bytes     int64 // the blobs' total size
	// Shared counts blobs of removed manifests that stay because a manifest
	// that stays names them too.
	Shared int
}

// ErrNoCriterion means PlanPrune was given nothing to select by.
var ErrNoCriterion = errors.New("prune needs a size, an age or a repository pattern")

// ErrNegativeAge means PlanPrune was given an OlderThan below zero.
var ErrNegativeAge = errors.New("prune age must not be negative")

// PlanPrune decides what a prune removes; it is a pure function of the
// inventory. The unit is the image: a manifest with the blobs it names,
// used as recently as its most recently used part; blobs no manifest names
// are units of their own. Units go by age, then by size, least recently used
// first. A blob goes only when no manifest that stays names it. Kept content,
// pinned repositories' manifests (and an index's children) never go.
func PlanPrune(inv Inventory, opts PruneOptions) (Plan, error) {
	if opts.MaxSize <= 0 && opts.OlderThan == nil && len(opts.Repos) == 0 {
		return Plan{}, ErrNoCriterion
	}
	if opts.OlderThan != nil && *opts.OlderThan < 0 {
		return Plan{}, ErrNegativeAge
	}
	p := newPlanner(inv, opts)
	units := p.candidates()
	filtersOnly := opts.OlderThan == nil && opts.MaxSize <= 0
	rest := units[:0:0]
	for _, u := range units {
		if filtersOnly || opts.unusedLongEnough(u.lastAccess) {
			p.remove(u)
		} else {
			rest = append(rest, u)
		}
	}
	if opts.MaxSize > 0 {
		for _, u := range rest {
			if p.usage <= opts.MaxSize {
				break
			}
			p.remove(u)
		}
	}
	return p.plan, nil
}

// unusedLongEnough reports whether something last used at lastAccess is
// old enough to go by OlderThan. With an age of zero everything is: what
// was used at Now itself too.
func (opts PruneOptions) unusedLongEnough(lastAccess time.Time) bool {
	if opts.OlderThan == nil {
		return false
	}
	return !lastAccess.After(opts.Now.Add(-*opts.OlderThan))
}

// unit is an image (a manifest) or a blob no manifest names.
type unit struct {
	manifest   *Manifest
	blob       *Blob
	lastAccess time.Time
}

func (u unit) digest() digest.Digest {
	if u.manifest != nil {
		return u.manifest.Digest
	}
	return u.blob.Digest
}

type planner struct {
	opts      PruneOptions
	blobs     map[digest.Digest]*Blob
	manifests map[digest.Digest]*Manifest
	// namedBy counts, for each blob, the manifests that stay and name it.
	namedBy map[digest.Digest]int
	// shared are the blobs a removed manifest named but that stay.
	shared map[digest.Digest]bool
	usage  int64
	plan   Plan
}

func newPlanner(inv Inventory, opts PruneOptions) *planner {
	p := &planner{
		opts:      opts,
		blobs:     make(map[digest.Digest]*Blob, len(inv.Blobs)),
		manifests: make(map[digest.Digest]*Manifest, len(inv.Manifests)),
		namedBy:   make(map[digest.Digest]int),
		shared:    make(map[digest.Digest]bool),
	}
	for i := range inv.Blobs {
		b := &inv.Blobs[i]
		p.blobs[b.Digest] = b
		p.usage += b.Size
	}
	for i := range inv.Manifests {
		m := &inv.Manifests[i]
		p.manifests[m.Digest] = m
		for _, d := range distinct(m.Blobs) {
			p.namedBy[d]++
		}
	}
	return p
}

// candidates lists the units the prune may remove, least recently used first.
func (p *planner) candidates() []unit {
	protected := protectedManifests(p.manifests, pinnedManifests(p.manifests, p.opts.Pins))
	var units []unit
	for _, m := range p.manifests {
		if protected[m.Digest] || (len(p.opts.Repos) > 0 && !p.opts.Repos.MatchAll(m.Repos)) {
			continue
		}
		units = append(units, unit{manifest: m, lastAccess: p.imageAccess(m, 0)})
	}
	for _, b := range p.blobs {
		if p.namedBy[b.Digest] == 0 && p.blobMayGo(b) {
			units = append(units, unit{blob: b, lastAccess: b.LastAccess})
		}
	}
	slices.SortFunc(units, func(a, b unit) int {
		if c := a.lastAccess.Compare(b.lastAccess); c != 0 {
			return c
		}
		return cmp.Compare(a.digest(), b.digest())
	})
	return units
}

// maxIndexDepth bounds the walk down nested indexes, which a hostile
// manifest could make cyclic.
const maxIndexDepth = 8

// imageAccess is the last use of a manifest or any part of it.
func (p *planner) imageAccess(m *Manifest, depth int) time.Time {
	last := m.LastAccess
	for _, d := range m.Blobs {
		if b, ok := p.blobs[d]; ok && b.LastAccess.After(last) {
			last = b.LastAccess
		}
	}
	if depth < maxIndexDepth {
		for _, d := range m.Manifests {
			if child, ok := p.manifests[d]; ok {
				if at := p.imageAccess(child, depth+1); at.After(last) {
					last = at
				}
			}
		}
	}
	return last
}

// blobMayGo reports whether a blob that no remaining manifest names may be
// removed: it is not kept, and a repository filter covers all its users.
func (p *planner) blobMayGo(b *Blob) bool {
	if b.Kept {
		return false
	}
	return len(p.opts.Repos) == 0 || len(b.Repos) == 0 || p.opts.Repos.MatchAll(b.Repos)
}

// remove adds a unit to the plan, with the blobs it alone named.
func (p *planner) remove(u unit) {
	if u.blob != nil {
		p.removeBlob(u.blob)
		return
	}
	m := u.manifest
	p.plan.Manifests = append(p.plan.Manifests, *m)
	for _, d := range distinct(m.Blobs) {
		p.namedBy[d]--
		b, cached := p.blobs[d]
		switch {
		case !cached:
		case p.namedBy[d] == 0 && p.blobMayGo(b):
			delete(p.shared, d)
			p.removeBlob(b)
		default:
			p.shared[d] = true
		}
	}
	p.plan.Shared = len(p.shared)
}

func (p *planner) removeBlob(b *Blob) {
	p.plan.Blobs = append(p.plan.Blobs, *b)
	p.plan.Bytes += b.Size
	p.usage -= b.Size
}

// distinct returns ds without repeats, in order.
func distinct(ds []digest.Digest) []digest.Digest {
	seen := make(map[digest.Digest]bool, len(ds))
	out := ds[:0:0]
	for _, d := range ds {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}
