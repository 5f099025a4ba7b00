package cache

// Usage returns the bytes the cache's blobs take on disk, counting the
// downloads in flight at the size upstream announced: what eviction must
// keep within the budget. It is kept in memory and costs nothing to call.
func (s *Store) Usage() int64 {
	return s.usage.Load() + s.reserved.Load()
}

// Grew returns a channel that receives a value after Usage has grown: a
// download started or a blob was committed. Signals are coalesced: one value
// may stand for many growths. The channel is shared; it has one intended
// receiver, the eviction loop.
func (s *Store) Grew() <-chan struct{} {
	return s.grew
}

// signalGrowth notifies Grew's receiver without ever blocking the caller.
func (s *Store) signalGrowth() {
	select {
	case s.grew <- struct{}{}:
	default:
	}
}

// forget takes a blob that left the index out of the usage and the gauges.
func (s *Store) forget(size int64) {
	s.usage.Add(-size)
	s.metrics.blobs.Dec()
	s.metrics.sizeBytes.Sub(float64(size))
}
