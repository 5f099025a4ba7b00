package mirror

import (
	"context"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxConcurrentFetches is a Remote's cap on upstream requests in
// flight when Remote.MaxConcurrentFetches is zero.
const DefaultMaxConcurrentFetches = 16

// limitedUpstream lets at most cap(slots) requests to one upstream run at
// once; the others wait their turn (or until their context ends) rather than
// fail. A blob download holds its slot until its body is closed. Each
// upstream has its own limiter, so one that hangs cannot hold up another.
type limitedUpstream struct {
	inner    Upstream
	slots    chan struct{}
	inFlight prometheus.Gauge
	waiting  prometheus.Gauge
}

var _ Upstream = (*limitedUpstream)(nil)

func newLimitedUpstream(inner Upstream, limit int, host string, m *metrics) *limitedUpstream {
	return &limitedUpstream{
		inner:    inner,
		slots:    make(chan struct{}, limit),
		inFlight: m.fetchesInFlight.WithLabelValues(host),
		waiting:  m.fetchesWaiting.WithLabelValues(host),
	}
}

// acquire takes a slot, waiting for one if all are taken.
func (l *limitedUpstream) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
	default:
		l.waiting.Inc()
		defer l.waiting.Dec()
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.inFlight.Inc()
	return nil
}

func (l *limitedUpstream) release() {
	l.inFlight.Dec()
	<-l.slots
}

func (l *limitedUpstream) HeadManifest(ctx context.Context, repo, reference string) (ocispec.Descriptor, error) {
	if err := l.acquire(ctx); err != nil {
		return ocispec.Descriptor{}, err
	}
	defer l.release()
	return l.inner.HeadManifest(ctx, repo, reference)
}

func (l *limitedUpstream) GetManifest(ctx context.Context, repo, reference string) (string, []byte, error) {
	if err := l.acquire(ctx); err != nil {
		return "", nil, err
	}
	defer l.release()
	return l.inner.GetManifest(ctx, repo, reference)
}

func (l *limitedUpstream) ListTags(ctx context.Context, repo string, nextPage func() error) ([]string, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.inner.ListTags(ctx, repo, nextPage)
}

func (l *limitedUpstream) Referrers(ctx context.Context, repo string, subject digest.Digest, nextPage func() error) ([]ocispec.Descriptor, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.inner.Referrers(ctx, repo, subject, nextPage)
}

// GetBlob keeps its slot until the returned body is closed: the download,
// not just the request, is what the cap bounds.
func (l *limitedUpstream) GetBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, int64, int64, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, 0, 0, err
	}
	rc, start, size, err := l.inner.GetBlob(ctx, repo, d, offset)
	if err != nil {
		l.release()
		return nil, 0, 0, err
	}
	return &slotBody{ReadCloser: rc, release: sync.OnceFunc(l.release)}, start, size, nil
}

// slotBody returns its limiter slot on the first Close; the cache may close
// a body twice (once when its context ends, once when the fill returns).
type slotBody struct {
	io.ReadCloser
	release func()
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
