package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/opencontainers/go-digest"
)

// Defaults for the zero values of Retry.
const (
	// DefaultFetchAttempts allows three retries in a row: at a 30% failure
	// rate all four fail less than once in a hundred downloads.
	DefaultFetchAttempts = 4
	// DefaultRetryBackoff is short next to a client's patience, long
	// enough for a reset connection or a restarting proxy to come back.
	DefaultRetryBackoff = 200 * time.Millisecond
	// maxRetryBackoff caps the doubling.
	maxRetryBackoff = 5 * time.Second
)

// Retry says how a download goes on after the upstream fails it: a body
// that ends early or breaks off, a 5xx or timeout before the first byte.
// The download asks again from the offset it got to (a Range request),
// re-using its running hash, and its readers keep streaming without seeing
// the interruption. A digest or size mismatch, a body larger than
// announced, a local error or a permanent upstream answer (404, 401) is
// never retried. The zero value means the defaults.
type Retry struct {
	// Attempts bounds the upstream requests in a row that fail without
	// bringing a new byte; a request that brings some starts the count
	// afresh (Limits.FillTimeout bounds the whole). 1 never retries.
	// Default: DefaultFetchAttempts.
	Attempts int
	// Backoff is the wait before the first retry; each next one waits
	// twice as long, up to 5s, less a random part of up to half (jitter,
	// so that the downloads a hiccup broke do not come back in step).
	// Default: DefaultRetryBackoff.
	Backoff time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = DefaultFetchAttempts
	}
	if r.Backoff <= 0 {
		r.Backoff = DefaultRetryBackoff
	}
	return r
}

// delay is the wait before retry n (1 for the first), with jitter.
func (r Retry) delay(n int) time.Duration {
	d := min(r.Backoff<<min(n-1, 16), maxRetryBackoff)
	return d - rand.N(d/2+1)
}

// errEndedEarly means a body ended cleanly before its announced size: the
// rest may come with another request.
var errEndedEarly = errors.New("body ended early")

// upstreamFailure marks an error as the upstream's doing, as opposed to the
// cache's own (a full disk): only those are worth another request.
type upstreamFailure struct{ err error }

func (e *upstreamFailure) Error() string { return e.err.Error() }
func (e *upstreamFailure) Unwrap() error { return e.err }

// retryable reports whether another request could fix what failed an
// attempt: the upstream's temporary failures (connection cut, 5xx,
// timeout, a body that ended early), never a mismatch, and nothing once
// the download itself was stopped (closed, stalled, abandoned, timed out).
func retryable(ctx context.Context, err error) bool {
	var f *upstreamFailure
	if ctx.Err() != nil || !errors.As(err, &f) {
		return false
	}
	if errors.Is(err, errEndedEarly) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// receive brings the whole blob into k, asking the upstream again after
// retryable failures. Each request continues from the offset k got to.
func (s *Store) receive(ctx context.Context, dl *download, fetch fetchFunc, k *sink, stall *time.Timer) error {
	failures := 0
	for {
		before := k.written
		stall.Reset(s.stallTimeout)
		err := s.attempt(ctx, dl, fetch, k, func() { stall.Reset(s.stallTimeout) })
		stall.Stop()
		if err == nil {
			return nil
		}
		if k.written > before {
			failures = 0
		}
		failures++
		if failures >= s.retry.Attempts || !retryable(ctx, err) {
			return err
		}
		s.metrics.downloadRetries.Inc()
		s.log.Debug("upstream download failed; asking again", "digest", dl.digest, "offset", k.written, "retry", failures, "err", err)
		if err := sleep(ctx, s.retry.delay(failures)); err != nil {
			return fmt.Errorf("download blob %s: %w", dl.digest, err)
		}
	}
}

// attempt makes one upstream request for the rest of the blob and copies
// what it brings into k.
func (s *Store) attempt(ctx context.Context, dl *download, fetch fetchFunc, k *sink, progressed func()) error {
	body, start, size, err := fetch(ctx, k.written)
	if err != nil {
		return fmt.Errorf("fetch blob %s: %w", dl.digest, &upstreamFailure{err})
	}
	defer body.Close()
	// Not every body notices its context ending; closing it unblocks Read.
	stopClosing := context.AfterFunc(ctx, func() { body.Close() })
	defer stopClosing()

	if k.file == nil {
		if err := s.prepare(ctx, dl, k, size); err != nil {
			return err
		}
	}
	if err := k.check(dl.digest, start, size); err != nil {
		return err
	}
	if start < k.written {
		// The upstream ignored the range and sent the blob from its start:
		// the readers have the first bytes already, so the new ones must
		// equal them. Then the running hash covers them too.
		if err := k.match(dl.digest, body, start); err != nil {
			return err
		}
	}
	err = copyBody(dl, k, body, progressed)
	if err == nil && k.size >= 0 && k.written < k.size {
		err = fmt.Errorf("blob %s: got %d bytes, want %d: %w: %w", dl.digest, k.written, k.size, ErrSizeMismatch, &upstreamFailure{errEndedEarly})
	}
	return err
}

// check refuses an answer that does not continue k: another size than the
// first answer announced, or a body starting neither where k got to nor
// at 0.
func (k *sink) check(d digest.Digest, start, size int64) error {
	switch {
	case k.size >= 0 && size != k.size:
		return fmt.Errorf("blob %s: upstream announced %d bytes, %d before: %w", d, size, k.size, ErrSizeMismatch)
	case start != k.written && start != 0:
		return fmt.Errorf("blob %s: upstream sent bytes from %d on, asked from %d: %w", d, start, k.written, ErrSizeMismatch)
	}
	return nil
}

// match reads the bytes from start up to k.written from body and checks
// they equal those in the temp file. A difference is a digest mismatch:
// readers have been given bytes that cannot be the blob's.
func (k *sink) match(d digest.Digest, body io.Reader, start int64) error {
	got := make([]byte, copyBufferSize)
	had := make([]byte, copyBufferSize)
	for off := start; off < k.written; {
		n := int(min(int64(len(got)), k.written-off))
		if _, err := io.ReadFull(body, got[:n]); err != nil {
			return fmt.Errorf("blob %s: read upstream again: %w", d, &upstreamFailure{err})
		}
		if _, err := k.file.ReadAt(had[:n], off); err != nil {
			return fmt.Errorf("blob %s: read temp file: %w", d, err)
		}
		if !bytes.Equal(got[:n], had[:n]) {
			return fmt.Errorf("blob %s: upstream sent other bytes at %d than before: %w", d, off, ErrDigestMismatch)
		}
		off += int64(n)
	}
	return nil
}

// prepare sets up the download after its first answer: the size check,
// the temp object, telling readers the size, and the budget.
func (s *Store) prepare(ctx context.Context, dl *download, k *sink, size int64) error {
	limits := s.currentLimits()
	if size > limits.MaxBlobSize {
		return fmt.Errorf("blob %s: upstream announced %d bytes, over the limit of %d: %w",
			dl.digest, size, limits.MaxBlobSize, ErrBlobTooLarge)
	}
	w, err := s.blobs.Create(ctx, dl.digest)
	if err != nil {
		return fmt.Errorf("download blob %s: %w", dl.digest, err)
	}
	dl.setFile(w)
	k.open(w, size, limits.MaxBlobSize, dl.digest.Algorithm())

	worth := s.worthFinishing(size)
	dl.start(size, worth)
	if !worth && s.abandonIfUnread(dl) {
		return fmt.Errorf("download blob %s: %w: no reader waited for it", dl.digest, ErrAbandoned)
	}
	if size > 0 && s.keeps(size) {
		// Count the download against the budget before it lands, so that
		// eviction makes room while it streams.
		k.reserved = size
		s.reserved.Add(size)
		s.signalGrowth()
	}
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
