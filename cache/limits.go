package cache

import "time"

// Defaults for the zero values of Limits.
const (
	// DefaultMaxBlobSize is far above any real image layer, yet keeps one
	// hostile upstream body from filling a disk.
	DefaultMaxBlobSize = 16 << 30
	// DefaultFillTimeout is generous for the largest layers on slow links;
	// the stall timeout catches a download that stops moving much sooner.
	DefaultFillTimeout = time.Hour
)

// Limits bound what one upstream download may cost. The zero value of each
// field means its default.
type Limits struct {
	// MaxBlobSize is the hard cap on one blob's bytes. A download whose
	// announced size is larger is refused before a byte is written; a body
	// of unknown length is cut, and refused, when it grows past the cap.
	// Either way it fails with ErrBlobTooLarge and nothing is kept.
	// Default: DefaultMaxBlobSize.
	MaxBlobSize int64
	// MaxKeptSize is the largest blob the cache keeps. A larger blob (up to
	// MaxBlobSize) is still downloaded once for all its concurrent readers,
	// verified and streamed to them, but never indexed: its temp file goes
	// when the download ends, and it is not counted against the budget while
	// it streams. Keeping it would make eviction flush the whole cache for
	// one blob that cannot fit anyway. The daemon sets it to its budget.
	// Default: no limit.
	MaxKeptSize int64
	// FillTimeout is the wall-clock limit of one download, however steadily
	// its bytes arrive; it fails with ErrFillTimeout. Default:
	// DefaultFillTimeout.
	FillTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxBlobSize <= 0 {
		l.MaxBlobSize = DefaultMaxBlobSize
	}
	if l.FillTimeout <= 0 {
		l.FillTimeout = DefaultFillTimeout
	}
	return l
}

// SetLimits replaces the limits of the downloads that start from now on;
// those in flight keep theirs.
func (s *Store) SetLimits(l Limits) {
	l = l.withDefaults()
	s.limits.Store(&l)
}

// currentLimits returns the limits set last, with their defaults.
func (s *Store) currentLimits() Limits {
	return *s.limits.Load()
}

// keeps reports whether a blob of size bytes may be kept. An unknown size
// (-1) may: the check is repeated once the download has its length.
func (s *Store) keeps(size int64) bool {
	limit := s.currentLimits().MaxKeptSize
	return limit <= 0 || size <= limit
}

// worthFinishing reports whether a download of the announced size is worth
// completing for the cache alone, once every reader has left: its size is
// known, so it cannot grow without end, and the cache keeps it.
func (s *Store) worthFinishing(size int64) bool {
	return size >= 0 && s.keeps(size)
}

// passThrough ends a verified download of a blob too large to keep: the
// readers get every byte from the open temp file, which the filler removes.
func (s *Store) passThrough(dl *download) {
	dl.passedThrough = true
	s.metrics.passedThrough.Inc()
	s.log.Info("blob larger than the cache budget served without caching it", "digest", dl.digest)
}
