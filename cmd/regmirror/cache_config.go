package main

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/eviction"
)

// CacheConfig is the cache's budget: the `cache:` section of the config file.
type CacheConfig struct {
	// MaxSize is the budget for cached blobs, e.g. "50GiB". Unset means
	// unlimited (the daemon warns): the cache then grows until free disk
	// falls under MinFreeDisk.
	MaxSize Size `yaml:"max_size"`
	// HighWatermark is the share of MaxSize at which eviction starts, and
	// LowWatermark the share it brings usage down to: "90%" and "80%" by default.
	HighWatermark Ratio `yaml:"high_watermark"`
	LowWatermark  Ratio `yaml:"low_watermark"`
	// MinFreeDisk makes the daemon evict, whatever the budget, when the data
	// directory's filesystem has less free space. Default 1GiB; "0" turns it off.
	MinFreeDisk *Size `yaml:"min_free_disk"`
	// Pin lists the images that are never evicted or pruned: their
	// manifests and every blob those name. Each is "REPO[:TAG]", a
	// repository glob ("library/*", "ghcr.io/team/**") with an optional tag
	// pattern ("library/node:20*"), or a mapping with the platforms of an
	// index to keep: {ref: "library/node:20", platforms: [linux/amd64]}.
	Pin []PinConfig `yaml:"pin"`
	// MaxBlobSize is the hard cap on one upstream blob: one announced
	// larger is refused, and a body of unknown length is cut at it. Default:
	// 16GiB, or MaxSize when that is smaller.
	MaxBlobSize Size `yaml:"max_blob_size"`
	// FillTimeout is the wall-clock limit of one upstream blob download
	// (default 1h), beside the stall timeout.
	FillTimeout time.Duration `yaml:"fill_timeout"`
}

// defaultMinFreeDisk keeps the filesystem from filling up, which would stop
// the index from writing, when no budget says otherwise.
const defaultMinFreeDisk = Size(1 << 30)

// limits are the store's limits for one download. A blob larger than the
// whole budget is not kept (keeping it would make eviction flush everything
// else for it), and by default not even fetched: the cap follows the budget.
func (c CacheConfig) limits() cache.Limits {
	maxBlob := int64(c.MaxBlobSize)
	if maxBlob == 0 {
		maxBlob = cache.DefaultMaxBlobSize
		if c.MaxSize > 0 {
			maxBlob = min(maxBlob, int64(c.MaxSize))
		}
	}
	return cache.Limits{MaxBlobSize: maxBlob, MaxKeptSize: int64(c.MaxSize), FillTimeout: c.FillTimeout}
}

// eviction turns the section into the eviction package's budget.
func (c CacheConfig) eviction() eviction.Config {
	minFree := defaultMinFreeDisk
	if c.MinFreeDisk != nil {
		minFree = *c.MinFreeDisk
	}
	return eviction.Config{
		MaxSize:       int64(c.MaxSize),
		HighWatermark: cmp.Or(float64(c.HighWatermark), eviction.DefaultHighWatermark),
		LowWatermark:  cmp.Or(float64(c.LowWatermark), eviction.DefaultLowWatermark),
		MinFreeDisk:   int64(minFree),
	}
}

// pins are the images eviction and prune spare: cache.pin, and every image
// of the prefetch list while it is listed.
func (c Config) pins() (eviction.Pins, error) {
	pins, err := c.Cache.pins()
	if err != nil {
		return nil, err
	}
	listed, err := c.Prefetch.pins()
	if err != nil {
		return nil, err
	}
	return append(pins, listed...), nil
}

// PinConfig is one entry of cache.pin.
type PinConfig struct {
	Ref       string   `yaml:"ref"`
	Platforms []string `yaml:"platforms"`
}

// UnmarshalYAML reads "REPO[:TAG]" or {ref: ..., platforms: [...]}.
func (p *PinConfig) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*p = PinConfig{Ref: node.Value}
		return nil
	}
	type plain PinConfig
	return node.Decode((*plain)(p))
}

// MarshalYAML writes a pin without platforms as its plain reference.
func (p PinConfig) MarshalYAML() (any, error) {
	if len(p.Platforms) == 0 {
		return p.Ref, nil
	}
	type plain PinConfig
	return plain(p), nil
}

// pins parses Pin.
func (c CacheConfig) pins() (eviction.Pins, error) {
	pins := make(eviction.Pins, 0, len(c.Pin))
	for _, p := range c.Pin {
		pin, err := eviction.ParsePin(p.Ref, p.Platforms...)
		if err != nil {
			return nil, err
		}
		pins = append(pins, pin)
	}
	return pins, nil
}

func (c CacheConfig) validate() error {
	var errs []error
	if err := c.eviction().Validate(); err != nil {
		// Only the watermarks can be wrong: sizes do not parse negative.
		errs = append(errs, &keyError{key: "cache.low_watermark", err: fmt.Errorf("cache: %w", err)})
	}
	for i, p := range c.Pin {
		if _, err := eviction.ParsePin(p.Ref, p.Platforms...); err != nil {
			errs = append(errs, &keyError{key: fmt.Sprintf("cache.pin[%d]", i), err: fmt.Errorf("cache.pin: %w", err)})
		}
	}
	if c.FillTimeout < 0 {
		errs = append(errs, keyErrorf("cache.fill_timeout", "cache.fill_timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Size is a byte count written for humans: "50GiB", "500 MB", "1048576".
type Size int64

// ParseSize reads a human size; binary (KiB, MiB, GiB) and decimal (kB, MB,
// GB) units are both understood.
func ParseSize(s string) (Size, error) {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number of bytes, or a number and a unit: KiB, MiB, GiB, TiB or kB, MB, GB, TB", s)
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n), nil
}

// UnmarshalYAML accepts a human size or a plain number of bytes.
func (s *Size) UnmarshalYAML(node *yaml.Node) error {
	v, err := ParseSize(node.Value)
	if err != nil {
		return typeError(node, err)
	}
	*s = v
	return nil
}

// MarshalYAML writes the size exactly, in the largest binary unit that
// divides it: "50GiB", "1536MiB", "1000".
func (s Size) MarshalYAML() (any, error) {
	for _, u := range []struct {
		name string
		size Size
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && s%u.size == 0 {
			return fmt.Sprintf("%d%s", s/u.size, u.name), nil
		}
	}
	return int64(s), nil
}

// String writes the size in binary units, e.g. "50 GiB".
func (s Size) String() string {
	return humanize.IBytes(uint64(max(s, 0)))
}

// Ratio is a share written as a percentage ("90%") or a fraction (0.9).
type Ratio float64

// ParseRatio reads "90%" or "0.9".
func ParseRatio(s string) (Ratio, error) {
	s = strings.TrimSpace(s)
	pct, isPct := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
	if err != nil {
		return 0, fmt.Errorf("ratio %q: want a percentage like 90%% or a fraction like 0.9", s)
	}
	if isPct || v > 1 {
		v /= 100
	}
	return Ratio(v), nil
}

// UnmarshalYAML accepts a percentage or a fraction.
func (r *Ratio) UnmarshalYAML(node *yaml.Node) error {
	v, err := ParseRatio(node.Value)
	if err != nil {
		return typeError(node, err)
	}
	*r = v
	return nil
}
