package cache

// Usage returns what eviction must keep within the budget: the bytes the
// cache's blobs take on disk, the downloads in flight at the size upstream
// announced, and what the manifests and tags count (see manifestCost and
// tagCost). It is kept in memory and costs nothing to call, once the index
// has been counted after Open: until then (a second for a million blobs)
// it waits.
func (s *Store) Usage() int64 {
	<-s.counted
	return s.usage.Load() + s.indexUsage.Load() + s.reserved.Load()
}

// What index rows count against the budget. Without them, a stream of
// distinct manifests (up to 4 MiB each) or tags would grow the index
// without bound while the budget saw nothing. A manifest counts its row
// (see manifestCost).
const (
	// manifestRowAllowance stands for the rows that come with a manifest
	// besides its own: its access time and the repositories that use it.
	manifestRowAllowance = 256
	// tagCost is what one tag row counts.
	tagCost = 128
)

// manifestCost is what a stored manifest row counts: its key, its value
// and manifestRowAllowance, read without fetching the value. For a large
// value the index's size may be off by a few bytes, but it is the same for
// every read of the row: adding and removing both use this one function.
func manifestCost(key []byte, valueSize int64) int64 {
	return int64(len(key)) + valueSize + manifestRowAllowance
}

// growIndex adds n (negative: takes it away) to what the index rows count,
// waking eviction when it grew.
func (s *Store) growIndex(n int64) {
	if n == 0 {
		return
	}
	s.indexUsage.Add(n)
	if n > 0 {
		s.signalGrowth()
	}
}

// Grew returns a channel that receives a value after Usage has grown: a
// download started, or a blob, a manifest or a tag was committed. Signals are coalesced: one value
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
