package cache

// SetMaxBlobSize sets the largest blob the cache keeps; zero or less means
// no limit. A larger blob is still downloaded once for all its concurrent
// readers, verified, and streamed to them, but never indexed: its temp file
// goes when the download ends, and it is not counted against the budget
// while it streams. Keeping it would make eviction flush the whole cache
// for one blob that cannot fit anyway. The daemon sets the limit to its
// budget, and again when the budget is reloaded.
func (s *Store) SetMaxBlobSize(n int64) {
	s.maxBlobSize.Store(n)
}

// keeps reports whether a blob of size bytes may be kept. An unknown size
// (-1) may: the check is repeated once the download has its length.
func (s *Store) keeps(size int64) bool {
	limit := s.maxBlobSize.Load()
	return limit <= 0 || size <= limit
}

// passThrough ends a verified download of a blob too large to keep: the
// readers get every byte from the open temp file, which the filler removes.
func (s *Store) passThrough(dl *download) {
	dl.passedThrough = true
	s.metrics.passedThrough.Inc()
	s.log.Info("blob larger than the cache budget served without caching it", "digest", dl.digest)
}
