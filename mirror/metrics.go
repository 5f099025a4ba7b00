package mirror

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cache results, the values of the "result" label.
const (
	resultHit       = "hit"
	resultMiss      = "miss"
	resultCoalesced = "coalesced"
	resultStale     = "stale"
	resultError     = "error"
	// resultNotFoundCached: answered 404 from a remembered upstream 404.
	resultNotFoundCached = "negative"
)

// Byte sources, the values of the "source" label.
const (
	sourceCache    = "cache"
	sourceUpstream = "upstream"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lookups     *prometheus.CounterVec
	bytesServed *prometheus.CounterVec
	staleServes *prometheus.CounterVec
	// refreshes counts background revalidations of hot tags.
	refreshes *prometheus.CounterVec
	// fetchesInFlight and fetchesWaiting show each upstream's fetch cap at work.
	fetchesInFlight *prometheus.GaugeVec
	fetchesWaiting  *prometheus.GaugeVec
	// invalidManifests counts upstream manifests refused before caching;
	// notExposed counts pulls refused because only the mirror's own
	// credentials can read the repository (see Remote.Expose).
	invalidManifests *prometheus.CounterVec
	notExposed       *prometheus.CounterVec
	// confirmations counts blobs a repository did not hold that were
	// downloaded through it to prove its upstream has them (see access.go).
	confirmations *prometheus.CounterVec
	// missesRefused counts requests refused by the miss limits.
	missesRefused prometheus.Counter
	// blobFirstByte times blob downloads until their first body byte.
	blobFirstByte *prometheus.HistogramVec
	// clusterForwardFailures counts blob and manifest downloads and tag
	// revalidations the owner replica did not answer, which went to the
	// upstream instead.
	clusterForwardFailures prometheus.Counter
	// hostedForwardFailures counts requests for hosted repositories that
	// the owner replica did not answer, answered 503.
	hostedForwardFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_http_requests_total",
			Help: "HTTP requests answered, by route, method and status class.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "regmirror_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request completely, by route.",
			Buckets: []float64{.001, .005, .02, .1, .5, 2, 10, 30, 120, 600},
		}, []string{"route"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_cache_lookups_total",
			Help: "Cache lookups by upstream, kind (blob, manifest, tag, referrers) and result (hit, miss, coalesced, stale, error, negative: a remembered upstream 404).",
		}, []string{"upstream", "kind", "result"}),
		bytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_served_bytes_total",
			Help: "Blob bytes sent to clients, by where they came from (cache or upstream).",
		}, []string{"source"}),
		staleServes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_stale_serves_total",
			Help: "Tags served from the cache past their TTL because the upstream failed.",
		}, []string{"upstream"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_tag_refreshes_total",
			Help: "Background revalidations of recently pulled tags, by result (unchanged, changed, error).",
		}, []string{"upstream", "result"}),
		fetchesInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_upstream_fetches_in_flight",
			Help: "Requests to an upstream in progress (blob downloads until their body is closed), at most its max_concurrent_fetches.",
		}, []string{"upstream"}),
		fetchesWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "regmirror_upstream_fetches_waiting",
			Help: "Requests to an upstream waiting for a slot because max_concurrent_fetches are in flight.",
		}, []string{"upstream"}),
		invalidManifests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_upstream_invalid_manifests_total",
			Help: "Manifests an upstream sent that were not valid (not JSON, not a manifest type, malformed digests) and were refused, not cached.",
		}, []string{"upstream"}),
		notExposed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_not_exposed_total",
			Help: "Pulls refused because the upstream serves the repository only with the mirror's credentials and upstreams[].expose does not list it.",
		}, []string{"upstream"}),
		confirmations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_link_confirmations_total",
			Help: "Cached blobs asked for under a repository that did not hold them, downloaded through that repository's upstream to prove it has them, by result (confirmed, refused: the bytes did not hash to the digest, error).",
		}, []string{"upstream", "result"}),
		missesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_misses_refused_total",
			Help: "Requests the cache could not answer that were refused (503) because their client, or all clients together, passed the miss limits.",
		}),
		blobFirstByte: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "regmirror_blob_first_byte_seconds",
			Help:    "Time from a blob GET's arrival to the first byte of its body, for successful ones, by result (hit, miss, coalesced, hosted).",
			Buckets: []float64{.001, .005, .02, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		clusterForwardFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cluster_forward_failures_total",
			Help: "Blob and manifest downloads and tag revalidations that the replica owning them did not answer (down, refused, 5xx, no answer in time) and that went to the upstream instead.",
		}),
		hostedForwardFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_cluster_hosted_forward_failures_total",
			Help: "Requests for hosted repositories that the replica owning the repository did not answer (down, refused the peer signature, no answer in time), answered 503.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.lookups, m.bytesServed, m.staleServes, m.refreshes, m.fetchesInFlight, m.fetchesWaiting,
		m.invalidManifests, m.notExposed, m.confirmations, m.missesRefused, m.blobFirstByte, m.clusterForwardFailures, m.hostedForwardFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeRequest(route, method string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, methodLabel(method), statusClass(status)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
}

// observeBlobFirstByte records how long a blob download waited for its
// first byte: from the cache, the disk's latency; on a miss, the upstream's.
func (m *metrics) observeBlobFirstByte(result string, took time.Duration) {
	if result == "" {
		result = "other"
	}
	m.blobFirstByte.WithLabelValues(result).Observe(took.Seconds())
}

// methodLabel keeps the method label bounded: clients may send any token
// as a method, and each would become a series of its own.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// forgetUpstream drops the series of an upstream the mirror no longer
// keeps, so that hosts named by clients (allow_any) do not pile up.
func (m *metrics) forgetUpstream(host string) {
	labels := prometheus.Labels{"upstream": host}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.lookups, m.staleServes, m.fetchesInFlight, m.fetchesWaiting, m.invalidManifests, m.notExposed,
		m.confirmations,
	} {
		v.DeletePartialMatch(labels)
	}
}

func (m *metrics) lookup(upstream, kind, result string) {
	m.lookups.WithLabelValues(upstream, kind, result).Inc()
}
