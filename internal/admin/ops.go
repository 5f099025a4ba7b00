package admin

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/mirror"
)

// Ops are the cache administration commands, run by the daemon for the
// admin socket or by the CLI on a store it opened itself. They are safe for
// concurrent use as far as the store is.
type Ops struct {
	store  *cache.Store
	budget eviction.Config
	pins   eviction.Pins
	now    func() time.Time
	// traffic reads the running daemon's counters; nil when the CLI opened
	// the store itself and there is no traffic to speak of.
	traffic func() *TrafficReport
	// evictor is the daemon's; nil when the CLI opened the store.
	evictor *eviction.Evictor
}

// Options configure Ops; the zero value suits a store the CLI opened.
type Options struct {
	// Budget is the cache's size budget (cache.max_size and watermarks).
	Budget eviction.Config
	// Pins are the images eviction and prune spare.
	Pins eviction.Pins
	// Now is prune's clock; nil means time.Now.
	Now func() time.Time
	// Traffic reads the running daemon's counters for Stats; nil when
	// there is no daemon.
	Traffic func() *TrafficReport
	// Evictor is the running daemon's, which Evict runs; nil makes Evict
	// run a pass of its own (without the free-disk check).
	Evictor *eviction.Evictor
}

// New returns the cache operations on store.
func New(store *cache.Store, opts Options) *Ops {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Ops{store: store, budget: opts.Budget, pins: opts.Pins, now: now, traffic: opts.Traffic, evictor: opts.Evictor}
}

// EvictReport is one eviction pass, `regmirror cache evict`.
type EvictReport struct {
	Usage    int64 `json:"usage_bytes"`
	Target   int64 `json:"target_bytes"`
	Removed  int   `json:"removed"`
	Freed    int64 `json:"freed_bytes"`
	Pinned   int64 `json:"pinned_bytes"`
	PinsOver bool  `json:"pins_over_budget"`
}

// Evict runs an eviction pass now: the daemon's evictor's, or, on a store
// the CLI opened, one of its own (without the free-disk check).
func (o *Ops) Evict(ctx context.Context) (EvictReport, error) {
	ev := o.evictor
	if ev == nil {
		budget := o.budget
		budget.MinFreeDisk = 0
		var err error
		if ev, err = eviction.New(EvictionCache{Store: o.store, Pins: o.pins}, budget, eviction.Options{}); err != nil {
			return EvictReport{}, err
		}
	}
	p, err := ev.Evict(ctx)
	return EvictReport{Usage: p.Usage, Target: p.Target, Removed: p.Removed, Freed: p.Freed, Pinned: p.Pinned, PinsOver: p.PinsOver}, err
}

// Progress tells how far a long operation has come.
type Progress struct {
	Phase string `json:"phase"` // "manifests", "blobs" or "verify"
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

// StatsReport is `regmirror cache stats`.
type StatsReport struct {
	Bytes int64 `json:"bytes"` // blobs
	// IndexBytes is what the manifests and tags count against the budget.
	IndexBytes    int64   `json:"index_bytes"`
	Budget        int64   `json:"budget_bytes"` // 0: unlimited
	HighWatermark float64 `json:"high_watermark"`
	LowWatermark  float64 `json:"low_watermark"`
	Blobs         int     `json:"blobs"`
	KeptBlobs     int     `json:"kept_blobs"`
	Manifests     int     `json:"manifests"`
	Tags          int     `json:"tags"`
	// PinnedBytes is what the pinned images' blobs and manifests take;
	// PinsOverBudget tells that it is above the budget's low watermark, so
	// that eviction cannot bring the cache within the budget.
	PinnedBytes    int64          `json:"pinned_bytes"`
	PinsOverBudget bool           `json:"pins_over_budget"`
	OldestAccess   time.Time      `json:"oldest_access,omitzero"`
	NewestAccess   time.Time      `json:"newest_access,omitzero"`
	TopRepos       []RepoUsage    `json:"top_repositories"`
	Traffic        *TrafficReport `json:"traffic,omitempty"` // only from a running daemon
}

// RepoUsage is the blob bytes one repository uses; shared blobs count for
// every repository that uses them.
type RepoUsage struct {
	Repo  string `json:"repository"`
	Bytes int64  `json:"bytes"`
	Blobs int    `json:"blobs"`
}

// TrafficReport is what the running daemon served since it started.
type TrafficReport struct {
	Since         time.Time `json:"since"`
	Hits          int64     `json:"hits"`   // lookups answered from the cache
	Misses        int64     `json:"misses"` // lookups that went upstream (coalesced ones included)
	HitRatio      float64   `json:"hit_ratio"`
	CacheBytes    int64     `json:"bytes_from_cache"`
	UpstreamBytes int64     `json:"bytes_from_upstream"`
}

// TrafficSource is what the running daemon served: the mirror.
type TrafficSource interface {
	Traffic() mirror.Traffic
}

var _ TrafficSource = (*mirror.Mirror)(nil)

// TrafficSince reports src's traffic for Stats, as served since since.
func TrafficSince(src TrafficSource, since time.Time) func() *TrafficReport {
	return func() *TrafficReport {
		t := src.Traffic()
		r := &TrafficReport{Since: since, Hits: t.Hits, Misses: t.Misses, CacheBytes: t.CacheBytes, UpstreamBytes: t.UpstreamBytes}
		if n := r.Hits + r.Misses; n > 0 {
			r.HitRatio = float64(r.Hits) / float64(n)
		}
		return r
	}
}

// topRepoCount is how many repositories stats lists.
const topRepoCount = 10

// Stats reports the cache's size against its budget, its content, its top
// repositories and, from a running daemon, its traffic.
func (o *Ops) Stats(ctx context.Context) (StatsReport, error) {
	inv, err := o.store.Inventory(ctx)
	if err != nil {
		return StatsReport{}, err
	}
	r := StatsReport{
		Budget: o.budget.MaxSize, HighWatermark: o.budget.HighWatermark, LowWatermark: o.budget.LowWatermark,
		Blobs: len(inv.Blobs), Manifests: len(inv.Manifests), Tags: len(inv.Tags),
	}
	repos := map[string]*RepoUsage{}
	for _, b := range inv.Blobs {
		r.Bytes += b.Size
		if b.Kept {
			r.KeptBlobs++
		}
		if r.OldestAccess.IsZero() || b.LastAccess.Before(r.OldestAccess) {
			r.OldestAccess = b.LastAccess
		}
		if b.LastAccess.After(r.NewestAccess) {
			r.NewestAccess = b.LastAccess
		}
		for _, repo := range b.Repos {
			u := repos[repo]
			if u == nil {
				u = &RepoUsage{Repo: repo}
				repos[repo] = u
			}
			u.Bytes += b.Size
			u.Blobs++
		}
	}
	for _, m := range inv.Manifests {
		r.IndexBytes += m.Cost
	}
	r.TopRepos = topRepos(repos, topRepoCount)
	if err := o.measurePins(ctx, inv, &r); err != nil {
		return r, err
	}
	if o.traffic != nil {
		r.Traffic = o.traffic()
	}
	return r, nil
}

// measurePins fills in what the pins take.
func (o *Ops) measurePins(ctx context.Context, inv cache.Inventory, r *StatsReport) error {
	if len(o.pins) == 0 {
		return nil
	}
	pinv, err := pinInventory(ctx, o.store, inv, o.pins)
	if err != nil {
		return err
	}
	for _, c := range eviction.Candidates(pinv, o.pins) {
		if c.Pinned {
			r.PinnedBytes += c.Size
		}
	}
	low := int64(float64(o.budget.MaxSize) * o.budget.LowWatermark)
	r.PinsOverBudget = o.budget.MaxSize > 0 && r.PinnedBytes > low
	return nil
}

func topRepos(repos map[string]*RepoUsage, n int) []RepoUsage {
	all := make([]RepoUsage, 0, len(repos))
	for _, u := range repos {
		all = append(all, *u)
	}
	slices.SortFunc(all, func(a, b RepoUsage) int {
		if c := cmp.Compare(b.Bytes, a.Bytes); c != 0 {
			return c
		}
		return cmp.Compare(a.Repo, b.Repo)
	})
	return all[:min(n, len(all))]
}

// PruneRequest is `regmirror cache prune`'s flags.
type PruneRequest struct {
	MaxSize int64 `json:"max_size,omitempty"`
	// OlderThan is nil when no age was given; zero means everything.
	OlderThan *time.Duration `json:"older_than,omitempty"`
	Repos     []string       `json:"repos,omitempty"`
	DryRun    bool           `json:"dry_run,omitempty"`
}

// PruneReport lists what a prune removed, or would remove.
type PruneReport struct {
	DryRun    bool             `json:"dry_run"`
	Manifests []PrunedManifest `json:"manifests"`
	Blobs     []PrunedBlob     `json:"blobs"`
	Bytes     int64            `json:"bytes_freed"`
	// Shared counts blobs of pruned manifests kept because a remaining
	// manifest uses them.
	Shared int `json:"shared_blobs_kept"`
	// Skipped are blobs the plan chose that were in use or kept by the time
	// they were to go.
	Skipped []digest.Digest `json:"skipped,omitempty"`
}

// PrunedManifest is a manifest a prune removed, or would remove.
type PrunedManifest struct {
	Digest     digest.Digest `json:"digest"`
	Repos      []string      `json:"repositories"`
	LastAccess time.Time     `json:"last_access"`
}

// PrunedBlob is a blob a prune removed, or would remove.
type PrunedBlob struct {
	Digest     digest.Digest `json:"digest"`
	Size       int64         `json:"size"`
	LastAccess time.Time     `json:"last_access"`
	Repos      []string      `json:"repositories"`
}

// Prune removes what req selects, or with req.DryRun only reports it.
func (o *Ops) Prune(ctx context.Context, req PruneRequest, progress func(Progress)) (PruneReport, error) {
	repos, err := eviction.ParseGlobs(req.Repos)
	if err != nil {
		return PruneReport{}, err
	}
	inv, err := o.store.Inventory(ctx)
	if err != nil {
		return PruneReport{}, err
	}
	pinv, err := pinInventory(ctx, o.store, inv, o.pins)
	if err != nil {
		return PruneReport{}, err
	}
	plan, err := eviction.PlanPrune(pinv, eviction.PruneOptions{
		MaxSize: req.MaxSize, OlderThan: req.OlderThan, Now: o.now(), Repos: repos, Pins: o.pins,
	})
	if err != nil {
		return PruneReport{}, err
	}
	if req.DryRun {
		return reportPlan(plan, true), nil
	}
	return o.carryOut(ctx, plan, progress)
}

// carryOut removes what plan chose and reports what actually went.
func (o *Ops) carryOut(ctx context.Context, plan eviction.Plan, progress func(Progress)) (PruneReport, error) {
	report := reportPlan(plan, false)
	manifests := make([]digest.Digest, len(plan.Manifests))
	for i, m := range plan.Manifests {
		manifests[i] = m.Digest
	}
	removedManifests, err := o.store.RemoveManifests(ctx, manifests, phaseProgress(progress, "manifests", len(manifests)))
	if err != nil {
		return report, err
	}
	blobs := make([]digest.Digest, len(plan.Blobs))
	for i, b := range plan.Blobs {
		blobs[i] = b.Digest
	}
	removedBlobs, err := o.store.RemoveBlobs(ctx, blobs, phaseProgress(progress, "blobs", len(blobs)))
	if err != nil {
		return report, err
	}
	report.Manifests = onlyRemoved(report.Manifests, removedManifests.Removed, func(m PrunedManifest) digest.Digest { return m.Digest })
	report.Blobs = onlyRemoved(report.Blobs, removedBlobs.Removed, func(b PrunedBlob) digest.Digest { return b.Digest })
	report.Bytes = removedBlobs.Freed
	report.Skipped = slices.Concat(removedManifests.Kept, removedBlobs.Kept, removedBlobs.InUse)
	return report, nil
}

func phaseProgress(progress func(Progress), phase string, total int) func(int) {
	if progress == nil {
		return nil
	}
	return func(done int) { progress(Progress{Phase: phase, Done: done, Total: total}) }
}

// onlyRemoved keeps the entries whose digest is among removed, in order.
func onlyRemoved[T any](entries []T, removed []digest.Digest, key func(T) digest.Digest) []T {
	gone := make(map[digest.Digest]bool, len(removed))
	for _, d := range removed {
		gone[d] = true
	}
	return slices.DeleteFunc(entries, func(e T) bool { return !gone[key(e)] })
}

func reportPlan(plan eviction.Plan, dryRun bool) PruneReport {
	r := PruneReport{DryRun: dryRun, Bytes: plan.Bytes, Shared: plan.Shared,
		Manifests: []PrunedManifest{}, Blobs: []PrunedBlob{}}
	for _, m := range plan.Manifests {
		r.Manifests = append(r.Manifests, PrunedManifest{Digest: m.Digest, Repos: m.Repos, LastAccess: m.LastAccess})
	}
	for _, b := range plan.Blobs {
		r.Blobs = append(r.Blobs, PrunedBlob{Digest: b.Digest, Size: b.Size, LastAccess: b.LastAccess, Repos: b.Repos})
	}
	return r
}

// pruneInventory converts the cache's inventory to the planner's.
func pruneInventory(inv cache.Inventory) eviction.Inventory {
	out := eviction.Inventory{
		Blobs:     make([]eviction.Blob, len(inv.Blobs)),
		Manifests: make([]eviction.Manifest, len(inv.Manifests)),
	}
	for i, b := range inv.Blobs {
		out.Blobs[i] = eviction.Blob{Digest: b.Digest, Size: b.Size, LastAccess: b.LastAccess, Kept: b.Kept, Repos: b.Repos}
	}
	for i, m := range inv.Manifests {
		out.Manifests[i] = eviction.Manifest{Digest: m.Digest, Size: m.Cost, LastAccess: m.LastAccess, Kept: m.Kept,
			Repos: m.Repos, Blobs: m.Blobs, Manifests: m.Manifests}
	}
	return out
}

// VerifyRequest is `regmirror cache verify`'s flags.
type VerifyRequest struct {
	Sample int `json:"sample,omitempty"`
}

// VerifyReport is what verify found and removed.
type VerifyReport struct {
	Checked int             `json:"checked"`
	Bytes   int64           `json:"bytes"`
	Corrupt []CorruptBlob   `json:"corrupt"`
	Removed []digest.Digest `json:"removed"`
}

// CorruptBlob is a blob whose bytes do not match its digest, and why.
type CorruptBlob struct {
	Digest digest.Digest `json:"digest"`
	Reason string        `json:"reason"`
}

// Verify re-hashes the cached blobs (or a sample) and removes corrupt ones.
func (o *Ops) Verify(ctx context.Context, req VerifyRequest, progress func(Progress)) (VerifyReport, error) {
	opts := cache.VerifyOptions{Sample: req.Sample}
	if progress != nil {
		// One event per percent at most: each may cross the admin socket.
		opts.Progress = func(done, total int, _ int64) {
			if done == total || done%max(total/100, 1) == 0 {
				progress(Progress{Phase: "verify", Done: done, Total: total})
			}
		}
	}
	v, err := o.store.Verify(ctx, opts)
	r := VerifyReport{Checked: v.Checked, Bytes: v.Bytes, Corrupt: []CorruptBlob{}, Removed: v.Removal.Removed}
	for _, c := range v.Corrupt {
		r.Corrupt = append(r.Corrupt, CorruptBlob{Digest: c.Digest, Reason: c.Reason})
	}
	if r.Removed == nil {
		r.Removed = []digest.Digest{}
	}
	return r, err
}

// EvictionCache adapts the store to what the eviction loop needs.
type EvictionCache struct {
	Store *cache.Store
	// Pins are the images eviction spares, manifests and blobs.
	Pins eviction.Pins
	// Evicted, when set, hears which victims (all manifests, or all
	// blobs) left the cache.
	Evicted func(victims []eviction.Candidate, removed []digest.Digest)
}

var _ eviction.Cache = EvictionCache{}

// Usage implements eviction.Cache.
func (c EvictionCache) Usage() int64 { return c.Store.Usage() }

// Candidates lists the blobs and the manifests; what must stay (kept,
// pinned with the blobs it names, or a manifest still named by a cached
// index) is marked Keep.
func (c EvictionCache) Candidates(ctx context.Context) ([]eviction.Candidate, error) {
	inv, err := c.Store.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	pinv, err := pinInventory(ctx, c.Store, inv, c.Pins)
	if err != nil {
		return nil, err
	}
	return eviction.Candidates(pinv, c.Pins), nil
}

// Remove removes the manifests among victims first, then the blobs.
func (c EvictionCache) Remove(ctx context.Context, victims []eviction.Candidate) (int, int64, error) {
	var manifests, blobs []digest.Digest
	var manifestVictims, blobVictims []eviction.Candidate
	for _, v := range victims {
		if v.Manifest {
			manifests, manifestVictims = append(manifests, v.Digest), append(manifestVictims, v)
		} else {
			blobs, blobVictims = append(blobs, v.Digest), append(blobVictims, v)
		}
	}
	rm, err := c.Store.RemoveManifests(ctx, manifests, nil)
	c.report(manifestVictims, rm.Removed)
	if err != nil {
		return len(rm.Removed), rm.Freed, err
	}
	rb, err := c.Store.RemoveBlobs(ctx, blobs, nil)
	c.report(blobVictims, rb.Removed)
	return len(rm.Removed) + len(rb.Removed), rm.Freed + rb.Freed, err
}

// report tells the evicted hook, if any, what was removed.
func (c EvictionCache) report(victims []eviction.Candidate, removed []digest.Digest) {
	if c.Evicted != nil && len(removed) > 0 {
		c.Evicted(victims, removed)
	}
}
