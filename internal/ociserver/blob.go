package ociserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, req Request) error {
	return s.serveBlob(w, r, req)
}

// serveBlob is the one answer to a GET or HEAD of a blob, wherever it
// comes from: it opens the body at the offset the Range asks for, sets the
// headers, answers 206 or 416 for a range, and sends the bytes.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, req Request) error {
	d := req.Digest
	ctx := r.Context()
	spec, ranged, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		return err
	}
	offset := int64(0)
	if ranged {
		offset = spec.startHint()
	}
	body, err := s.backend.GetBlob(ctx, req.Repo(), d, offset)
	if err != nil {
		return err
	}
	defer body.Body.Close()

	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+d.String()+`"`)
	span := byteRange{start: 0, end: body.Size - 1}
	status := http.StatusOK
	if ranged {
		if span, err = spec.resolve(body.Size); err != nil {
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(body.Size, 10))
			return err
		}
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", span.start, span.end, body.Size))
	}
	if body.Size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(max(span.length(), 0), 10))
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return nil
	}
	s.copyBlob(ctx, w, body, span)
	return nil
}

// copyBlob sends span of the blob. Headers are out by now, so a failure
// (the download failed verification, the client left) can only abort the
// connection: the client must see an error, never a clean end of a body
// with wrong or missing bytes.
func (s *Server) copyBlob(ctx context.Context, w http.ResponseWriter, body *Blob, span byteRange) {
	var n int64
	var err error
	if f := verifiedFile(body.Body); f != nil && body.Size >= 0 {
		n, err = sendFile(w, f, span, s.opts.SendTimeout)
	} else {
		n, err = copyStream(w, body, span, s.opts.SendTimeout)
	}
	if s.opts.BlobBytesSent != nil {
		s.opts.BlobBytesSent(body.Source, n)
	}
	if err != nil {
		s.abort(ctx, fmt.Errorf("sending blob after %d bytes: %w", n, err))
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
func copyStream(w http.ResponseWriter, body *Blob, span byteRange, timeout time.Duration) (int64, error) {
	if skip := span.start - body.Offset; skip > 0 {
		if _, err := io.CopyN(io.Discard, body.Body, skip); err != nil {
			return 0, fmt.Errorf("skipping to offset %d: %w", span.start, err)
		}
	}
	var src io.Reader = body.Body
	if body.Size >= 0 {
		src = io.LimitReader(body.Body, span.length())
	}
	buf := copyBuffers.Get().(*[]byte)
	dw := newDeadlineWriter(w, timeout)
	n, err := io.CopyBuffer(dw, src, *buf)
	copyBuffers.Put(buf)
	if err == nil {
		dw.clear()
	}
	if err == nil && body.Size >= 0 && n < span.length() {
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
