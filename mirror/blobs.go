package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// blobBody is an open blob, positioned at offset, and where its bytes come from.
type blobBody struct {
	rc     io.ReadCloser
	offset int64
	size   int64 // -1 while unknown
	source string
}

// serveBlob answers a pull of a proxied blob.
func (m *Mirror) serveBlob(w http.ResponseWriter, r *http.Request, req request) error {
	rem, t, err := m.remoteFor(r.Context(), req)
	if err != nil {
		return err
	}
	return m.serveBlobBody(w, r, req.digest, func(ctx context.Context, offset int64) (blobBody, error) {
		return m.openBlob(ctx, rem, t, req.digest, offset)
	})
}

// serveBlobBody answers a GET or HEAD of blob d, proxied or hosted alike:
// it opens the body at the offset the Range asks for, sets the headers,
// answers 206 or 416 for a range, and sends the bytes.
func (m *Mirror) serveBlobBody(w http.ResponseWriter, r *http.Request, d digest.Digest,
	open func(ctx context.Context, offset int64) (blobBody, error)) error {
	ctx := r.Context()
	spec, ranged, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		return err
	}
	offset := int64(0)
	if ranged {
		offset = spec.startHint()
	}
	body, err := open(ctx, offset)
	if err != nil {
		return err
	}
	defer body.rc.Close()

	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+d.String()+`"`)
	span := byteRange{start: 0, end: body.size - 1}
	status := http.StatusOK
	if ranged {
		if span, err = spec.resolve(body.size); err != nil {
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(body.size, 10))
			return err
		}
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", span.start, span.end, body.size))
	}
	if body.size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(max(span.length(), 0), 10))
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	m.copyBlob(ctx, w, body, span)
	return nil
}

// openBlob serves from the cache what t holds or the client may read
// anyway, or joins or starts the one upstream download of d for t,
// streaming it while it fills the cache.
func (m *Mirror) openBlob(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (blobBody, error) {
	if body, ok, err := m.cachedBlob(ctx, rem, t, d, offset); ok || err != nil {
		return body, err
	}
	if err := m.chargeMiss(ctx); err != nil {
		return blobBody{}, err
	}
	if body, ok := m.joinDownload(ctx, rem, t, d, offset); ok {
		return body, nil
	}
	fetch := func(ctx context.Context, from int64) (io.ReadCloser, int64, int64, error) {
		return rem.Upstream.GetBlob(ctx, t.path, d, from)
	}
	rc, size, joined, err := m.cache.FetchBlob(ctx, t.cacheKey(), d, offset, fetch)
	var notHeld interface{ NotHeldBy() string }
	if errors.As(err, &notHeld) {
		return m.openHeldBlob(ctx, rem, t, d, offset)
	}
	if err != nil {
		m.lookupResult(ctx, rem, "blob", resultError)
		return blobBody{}, fromUpstream(err, rem.Host, kindBlob)
	}
	m.lookupResult(ctx, rem, "blob", missOrCoalesced(joined))
	if !joined && m.events != nil {
		rc = &notifyAtEnd{ReadCloser: rc, pos: offset, size: size, done: func() {
			m.notifyPull(ctx, t, "blobs", d, "application/octet-stream", size)
		}}
	}
	return blobBody{rc: rc, offset: offset, size: size, source: sourceUpstream}, nil
}

// cachedBlob opens d from the cache when the client may read it under t
// without asking upstream; ok is false when it may not, or d is not cached.
func (m *Mirror) cachedBlob(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (blobBody, bool, error) {
	may, err := m.mayServe(ctx, t, d)
	if err != nil || !may {
		return blobBody{}, false, err
	}
	rc, size, err := m.cache.ReadBlob(ctx, d, offset)
	if errors.Is(err, fs.ErrNotExist) {
		return blobBody{}, false, nil
	}
	if err != nil {
		return blobBody{}, false, fmt.Errorf("reading cached blob %s: %w", d, err)
	}
	m.lookupResult(ctx, rem, "blob", resultHit)
	return blobBody{rc: rc, offset: offset, size: size, source: sourceCache}, true, nil
}

// joinDownload joins a download of d in flight for another repository of
// t's registry that the client may read, so that two images sharing a
// layer fetch it once. Downloads for other registries are never joined: a
// hostile registry's download, bound to fail, must not take this one's
// readers down with it. ok is false when there is none to join.
func (m *Mirror) joinDownload(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (blobBody, bool) {
	for _, repo := range m.cache.Downloading(d) {
		host, _, _ := strings.Cut(repo, "/")
		if repo == t.cacheKey() || host != t.host || !m.mayReadCached(ctx, repo) {
			continue
		}
		ended := func(context.Context, int64) (io.ReadCloser, int64, int64, error) {
			return nil, 0, 0, errDownloadEnded
		}
		rc, size, _, err := m.cache.FetchBlob(ctx, repo, d, offset, ended)
		if err != nil {
			continue // it ended meanwhile: download for t
		}
		m.lookupResult(ctx, rem, "blob", resultCoalesced)
		return blobBody{rc: rc, offset: offset, size: size, source: sourceUpstream}, true
	}
	return blobBody{}, false
}

// errDownloadEnded means a download to join ended before it could be.
var errDownloadEnded = errors.New("the download ended before it was joined")

// openHeldBlob serves d, which other repositories than t hold: t's
// upstream must first prove it has d by sending its bytes.
func (m *Mirror) openHeldBlob(ctx context.Context, rem *Remote, t target, d digest.Digest, offset int64) (blobBody, error) {
	if err := m.confirmBlob(ctx, rem, t, d); err != nil {
		m.lookupResult(ctx, rem, "blob", resultError)
		return blobBody{}, fromUpstream(err, rem.Host, kindBlob)
	}
	if body, ok, err := m.cachedBlob(ctx, rem, t, d, offset); ok || err != nil {
		return body, err
	}
	return blobBody{}, newError(codeUnavailable, "blob %s was removed while it was confirmed; retry", d)
}

// copyBlob sends span of the blob. Headers are out by now, so a failure
// (the download failed verification, the client left) can only abort the
// connection: the client must see an error, never a clean end of a body
// with wrong or missing bytes.
func (m *Mirror) copyBlob(ctx context.Context, w http.ResponseWriter, body blobBody, span byteRange) {
	var n int64
	var err error
	if f := verifiedFile(body.rc); f != nil && body.size >= 0 {
		n, err = sendFile(w, f, span, m.sendTimeout)
	} else {
		n, err = copyStream(w, body, span, m.sendTimeout)
	}
	m.metrics.bytesServed.WithLabelValues(body.source).Add(float64(n))
	if err != nil {
		m.abort(ctx, fmt.Errorf("sending blob after %d bytes: %w", n, err))
	}
}

// verifiedFile returns the cache file behind rc when every byte of it is
// verified, nil when rc streams a download whose bytes are still checked.
func verifiedFile(rc io.Reader) *os.File {
	if v, ok := rc.(interface{ VerifiedFile() *os.File }); ok {
		return v.VerifiedFile()
	}
	return nil
}

// sendFile sends span of a verified blob file in chunks of sendChunk, each
// an io.LimitedReader over the *os.File handed to the response writer's
// ReadFrom: on a plain TCP connection net/http then has the kernel copy
// file to socket (sendfile(2)), with no user-space buffer and no read or
// write system call per chunk. The write deadline is renewed before each
// chunk, so a client that stops reading is dropped after the send timeout,
// as on the streaming path.
func sendFile(w http.ResponseWriter, f *os.File, span byteRange, timeout time.Duration) (int64, error) {
	if _, err := f.Seek(span.start, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seeking to offset %d: %w", span.start, err)
	}
	rc := http.NewResponseController(w)
	var sent int64
	for sent < span.length() {
		// A writer without deadlines (a test recorder) just writes.
		_ = rc.SetWriteDeadline(time.Now().Add(timeout))
		chunk := min(sendChunk, span.length()-sent)
		n, err := io.Copy(w, io.LimitReader(f, chunk))
		sent += n
		if err == nil && n < chunk {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return sent, err
		}
	}
	// The next response on a kept-alive connection must not inherit it.
	_ = rc.SetWriteDeadline(time.Time{})
	return sent, nil
}

// copyStream sends span of a blob that is not a verified file (a download
// in progress, whose reader checks every byte) through a pooled buffer,
// with a write deadline before each write.
func copyStream(w http.ResponseWriter, body blobBody, span byteRange, timeout time.Duration) (int64, error) {
	if skip := span.start - body.offset; skip > 0 {
		if _, err := io.CopyN(io.Discard, body.rc, skip); err != nil {
			return 0, fmt.Errorf("skipping to offset %d: %w", span.start, err)
		}
	}
	var src io.Reader = body.rc
	if body.size >= 0 {
		src = io.LimitReader(body.rc, span.length())
	}
	buf := copyBuffers.Get().(*[]byte)
	dw := newDeadlineWriter(w, timeout)
	n, err := io.CopyBuffer(dw, src, *buf)
	copyBuffers.Put(buf)
	if err == nil {
		dw.clear()
	}
	if err == nil && body.size >= 0 && n < span.length() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// sendChunk is what a client must take within the send timeout on the
// sendfile path: the chunk the streaming path writes, so that both hold a
// slow client to the same rate.
const sendChunk = copyBufferSize

// copyBufferSize is the chunk a blob is sent in. io.Copy's 32 KiB costs a
// read and a write system call per 32 KiB, which on virtual machines takes
// more CPU than moving the bytes; 128 KiB, the chunk the cache fills
// downloads in, amortises them while keeping a slow client's buffer small.
const copyBufferSize = 128 << 10

// copyBuffers recycles send buffers across requests.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, copyBufferSize)
	return &b
}}

func (m *Mirror) abort(ctx context.Context, err error) {
	noteError(ctx, err)
	panic(http.ErrAbortHandler)
}
