package bucket

import (
	"errors"
	"io/fs"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/promreg"
)

type metrics struct {
	reads         *prometheus.CounterVec
	claims        *prometheus.CounterVec
	uploadedBlobs prometheus.Counter
	uploadedBytes prometheus.Counter
	corrupt       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_bucket_reads_total",
			Help: "Blob reads from the bucket the replicas share, by result: hit, miss (not there), error (the bucket did not answer as it should).",
		}, []string{"result"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regmirror_bucket_fill_claims_total",
			Help: "Leases of fetching a blob from the upstream asked of the bucket, by result: taken, held (by another download), error.",
		}, []string{"result"}),
		uploadedBlobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_bucket_uploaded_blobs_total",
			Help: "Blobs this replica downloaded and copied to the bucket.",
		}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_bucket_uploaded_bytes_total",
			Help: "Bytes of the blobs this replica copied to the bucket.",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "regmirror_bucket_corrupt_blobs_total",
			Help: "Blobs read whole from the bucket whose bytes did not match their digest; each was removed from the bucket.",
		}),
	}
	for _, r := range []string{"hit", "miss", "error"} {
		m.reads.WithLabelValues(r)
	}
	for _, r := range []string{"taken", "held", "error"} {
		m.claims.WithLabelValues(r)
	}
	var err error
	if m.reads, err = promreg.Register(reg, m.reads); err == nil {
		if m.claims, err = promreg.Register(reg, m.claims); err == nil {
			if m.uploadedBlobs, err = promreg.Register(reg, m.uploadedBlobs); err == nil {
				if m.uploadedBytes, err = promreg.Register(reg, m.uploadedBytes); err == nil {
					m.corrupt, err = promreg.Register(reg, m.corrupt)
				}
			}
		}
	}
	return m, err
}

// read counts a read that ended in err.
func (m *metrics) read(err error) {
	switch {
	case err == nil:
		m.reads.WithLabelValues("hit").Inc()
	case errors.Is(err, fs.ErrNotExist):
		m.reads.WithLabelValues("miss").Inc()
	default:
		m.reads.WithLabelValues("error").Inc()
	}
}
