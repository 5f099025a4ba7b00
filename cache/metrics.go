package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

// metrics are the Store's Prometheus collectors. Their labels are bounded:
// never a repository or a digest.
type metrics struct {
	digestMismatches  prometheus.Counter
	downloadsInFlight prometheus.Gauge
	coalescedWaiters  prometheus.Counter
	sizeBytes         prometheus.Gauge
	blobs             prometheus.Gauge
	// corruptFiles counts cached blob files found not to hash to their
	// digest on their first read after Open.
	corruptFiles prometheus.Counter
	// passedThrough counts blobs served without caching: larger than the budget.
	passedThrough prometheus.Counter
	// downloadRetries counts upstream requests a download made again
	// after a temporary failure.
	downloadRetries prometheus.Counter
	// shareFailures counts kept downloads not copied to the shared store.
	shareFailures prometheus.Counter
}

// newMetrics builds the collectors and registers them on reg, which may be
// nil. A collector that is already registered (a Store reopened in the same
// process) is reused, so its series continue.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		digestMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cache_digest_mismatches_total",
			Help: "Blob downloads discarded because their content did not match the digest.",
		}),
		downloadsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_cache_downloads_in_flight",
			Help: "Blob downloads currently filling the cache.",
		}),
		coalescedWaiters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cache_coalesced_waiters_total",
			Help: "Blob requests that joined a download already in flight.",
		}),
		sizeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_cache_size_bytes",
			Help: "Total size of the cached blobs.",
		}),
		blobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "regmirror_cache_blobs",
			Help: "Number of cached blobs.",
		}),
		corruptFiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cache_corrupt_files_total",
			Help: "Cached blob files that did not hash to their digest when first read after a restart; dropped, never served.",
		}),
		passedThrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cache_passed_through_total",
			Help: "Blob downloads served to clients but not cached because the blob is larger than the cache budget.",
		}),
		downloadRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cache_download_retries_total",
			Help: "Upstream requests a blob download made again, from the offset it got to, after a temporary failure.",
		}),
		shareFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cache_share_failures_total",
			Help: "Downloaded blobs kept in the local cache but not copied to the bucket the replicas share; other replicas download them again.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.digestMismatches, err = promreg.Register(reg, m.digestMismatches)
	if err == nil {
		m.downloadsInFlight, err = promreg.Register(reg, m.downloadsInFlight)
	}
	if err == nil {
		m.coalescedWaiters, err = promreg.Register(reg, m.coalescedWaiters)
	}
	if err == nil {
		m.sizeBytes, err = promreg.Register(reg, m.sizeBytes)
	}
	if err == nil {
		m.blobs, err = promreg.Register(reg, m.blobs)
	}
	if err == nil {
		m.corruptFiles, err = promreg.Register(reg, m.corruptFiles)
	}
	if err == nil {
		m.passedThrough, err = promreg.Register(reg, m.passedThrough)
	}
	if err == nil {
		m.downloadRetries, err = promreg.Register(reg, m.downloadRetries)
	}
	if err == nil {
		m.shareFailures, err = promreg.Register(reg, m.shareFailures)
	}
	if err != nil {
		return m, fmt.Errorf("register cache metrics: %w", err)
	}
	return m, nil
}
