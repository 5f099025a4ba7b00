package eviction

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of Config.
const (
	DefaultHighWatermark = 0.90
	DefaultLowWatermark  = 0.80
	DefaultInterval      = time.Minute
)

// Config is the cache's budget. The zero value means no budget at all:
// nothing is ever evicted.
type Config struct {
	// MaxSize is the budget in bytes for the cached blobs; 0 means none.
	MaxSize int64
	// HighWatermark is the fraction of MaxSize above which eviction starts;
	// LowWatermark the fraction it brings usage down to. Defaults: 0.9, 0.8.
	// The gap between them keeps eviction from running after every download.
	HighWatermark, LowWatermark float64
	// MinFreeDisk makes eviction run, whatever the budget, when the cache's
	// filesystem has fewer free bytes; 0 turns the check off.
	MinFreeDisk int64
	// Interval is how often usage and free space are checked even without a
	// wake-up; free space shrinks through other programs too. Default: one minute.
	Interval time.Duration
}

func (c Config) withDefaults() Config {
	if c.HighWatermark == 0 {
		c.HighWatermark = DefaultHighWatermark
	}
	if c.LowWatermark == 0 {
		c.LowWatermark = DefaultLowWatermark
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	return c
}

// Validate reports a budget that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.MaxSize < 0 {
		errs = append(errs, errors.New("max size must not be negative"))
	}
	if c.MinFreeDisk < 0 {
		errs = append(errs, errors.New("min free disk must not be negative"))
	}
	if c.LowWatermark <= 0 || c.HighWatermark > 1 || c.LowWatermark >= c.HighWatermark {
		errs = append(errs, fmt.Errorf("watermarks must satisfy 0 < low (%g) < high (%g) <= 1", c.LowWatermark, c.HighWatermark))
	}
	return errors.Join(errs...)
}

// Cache is what eviction needs from the cache.
type Cache interface {
	// Usage returns the bytes the cache counts against its budget: blobs,
	// downloads in flight, manifests and index rows. It is called often and
	// must be cheap.
	Usage() int64
	// Candidates lists the cached blobs and manifests, with Keep set on
	// those that must stay whatever happens.
	Candidates(ctx context.Context) ([]Candidate, error)
	// Remove deletes the victims, except blobs that are being read or
	// downloaded and kept content, and returns how many went and the bytes
	// of the budget they freed.
	Remove(ctx context.Context, victims []Candidate) (removed int, freed int64, err error)
}

// Options are an Evictor's collaborators. The zero value of each means none.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// DiskFree returns the free bytes of the cache's filesystem; needed
	// only with Config.MinFreeDisk.
	DiskFree func() (int64, error)
}

// Evictor keeps a cache within its budget. Evict is safe for concurrent use;
// passes do not overlap.
type Evictor struct {
	cache    Cache
	cfg      Config
	log      *slog.Logger
	diskFree func() (int64, error)
	metrics  *metrics

	pass chan struct{} // a one-slot semaphore: one pass at a time
	// pinsOver tells whether the last pass found pinned content alone over
	// its target; guarded by pass.
	pinsOver bool
}

// New returns an Evictor of c under cfg.
func New(c Cache, cfg Config, opts Options) (*Evictor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eviction: %w", err)
	}
	if cfg.MinFreeDisk > 0 && opts.DiskFree == nil {
		return nil, errors.New("eviction: a minimum of free disk needs a way to measure it")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m.budget.Set(float64(cfg.MaxSize))
	e := &Evictor{cache: c, cfg: cfg, log: opts.Logger, diskFree: opts.DiskFree, metrics: m, pass: make(chan struct{}, 1)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	return e, nil
}

// Run evicts whenever wake delivers (the cache grew) and every
// Config.Interval, until ctx ends. A failed pass is logged, not returned:
// the next one may succeed. Run returns nil when ctx is done.
func (e *Evictor) Run(ctx context.Context, wake <-chan struct{}) error {
	tick := time.NewTicker(e.cfg.Interval)
	defer tick.Stop()
	for {
		if _, err := e.Evict(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("cache eviction", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

// Pass reports one eviction pass.
type Pass struct {
	Usage   int64 // bytes before the pass
	Target  int64 // bytes the pass aimed at; equal to Usage when nothing was due
	Removed int   // blobs and manifests removed
	Freed   int64 // the bytes of the budget they took
	// Pinned is what pinned content takes; PinsOver tells that it alone is
	// above Target, so that the pass could evict only unpinned content and
	// not reach Target. Both are set only when a pass was due.
	Pinned   int64
	PinsOver bool
}

// Evict runs one pass now: when usage is above the high watermark, or free
// disk below the minimum, it removes the least recently used content until
// usage is at the low watermark and free disk back above the minimum (with
// a margin of a tenth of it). Kept content and blobs in use are skipped.
func (e *Evictor) Evict(ctx context.Context) (Pass, error) {
	select {
	case e.pass <- struct{}{}:
		defer func() { <-e.pass }()
	case <-ctx.Done():
		return Pass{}, ctx.Err()
	}
	usage := e.cache.Usage()
	p := Pass{Usage: usage, Target: usage}
	target, due, err := e.target(usage)
	if err != nil || !due {
		return p, err
	}
	p.Target = target
	candidates, err := e.cache.Candidates(ctx)
	if err != nil {
		return p, fmt.Errorf("list eviction candidates: %w", err)
	}
	e.notePins(&p, candidates)
	err = e.removeDownTo(ctx, candidates, usage, target, &p)
	e.metrics.record(p)
	if err != nil {
		return p, fmt.Errorf("evict: %w", err)
	}
	e.log.Info("evicted least recently used content", "removed", p.Removed, "freed_bytes", p.Freed,
		"usage_bytes", usage, "target_bytes", target)
	return p, nil
}

// notePins measures the pinned content and says, once each time it
// happens, that pins alone exceed what the pass aims for.
func (e *Evictor) notePins(p *Pass, candidates []Candidate) {
	p.Pinned = pinnedBytes(candidates)
	p.PinsOver = p.Pinned > p.Target
	e.metrics.pinned.Set(float64(p.Pinned))
	if p.PinsOver {
		e.metrics.pinsOver.Set(1)
	} else {
		e.metrics.pinsOver.Set(0)
	}
	if p.PinsOver && !e.pinsOver {
		e.log.Warn("pinned content alone exceeds the cache budget: only unpinned content is evicted; "+
			"raise cache.max_size or pin less", "pinned_bytes", p.Pinned, "target_bytes", p.Target, "budget_bytes", e.cfg.MaxSize)
	}
	e.pinsOver = p.PinsOver
}

// maxRounds bounds how often a pass selects again after the cache refused
// some victims (in use right now).
const maxRounds = 4

// removeDownTo removes the least recently used candidates until usage is
// at target. Victims the cache refuses are passed over in the next round.
func (e *Evictor) removeDownTo(ctx context.Context, candidates []Candidate, usage, target int64, p *Pass) error {
	for range maxRounds {
		victims := Select(candidates, usage, target)
		if len(victims) == 0 {
			return nil
		}
		tried := make(map[candidateKey]bool, len(victims))
		for _, v := range victims {
			tried[v.key()] = true
		}
		removed, freed, err := e.cache.Remove(ctx, victims)
		p.Removed += removed
		p.Freed += freed
		if err != nil || removed == len(victims) {
			return err
		}
		for i := range candidates {
			candidates[i].Keep = candidates[i].Keep || tried[candidates[i].key()]
		}
		usage -= freed
	}
	return nil
}

// target decides whether a pass is due at usage and what it must bring
// usage down to.
func (e *Evictor) target(usage int64) (target int64, due bool, err error) {
	target = usage
	if max := e.cfg.MaxSize; max > 0 && usage > int64(float64(max)*e.cfg.HighWatermark) {
		target, due = int64(float64(max)*e.cfg.LowWatermark), true
	}
	if e.cfg.MinFreeDisk > 0 {
		free, err := e.diskFree()
		if err != nil {
			return 0, false, fmt.Errorf("measure free disk: %w", err)
		}
		if free < e.cfg.MinFreeDisk {
			shortfall := e.cfg.MinFreeDisk - free + e.cfg.MinFreeDisk/10
			target, due = min(target, max(usage-shortfall, 0)), true
		}
	}
	return target, due, nil
}
