package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ErrBadRange is the cause of an *Error for a 206 answer whose
// Content-Range is not the range asked for.
var ErrBadRange = errors.New("partial answer for another range than asked")

// GetBlob opens a download of blob d from byte offset on, following
// redirects to a CDN without the registry's credentials. For offset > 0 it
// asks for the range bytes=offset-; start reports where the body begins:
// offset when the upstream honoured the range (a 206 whose Content-Range
// starts there and runs to the end), 0 when it sent the whole blob (a 200).
// size is the blob's full size, -1 when unknown. The caller verifies the
// digest; read failures are temporary *Errors.
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (body io.ReadCloser, start, size int64, err error) {
	o := opError{host: c.host, op: "get blob", repo: repo, ref: d.String(), notFoundCode: "BLOB_UNKNOWN"}
	if err := validRepo(repo); err != nil {
		return nil, 0, 0, o.invalid(err)
	}
	if err := d.Validate(); err != nil {
		return nil, 0, 0, o.invalid(err)
	}
	if offset < 0 {
		return nil, 0, 0, o.invalid(fmt.Errorf("negative offset %d", offset))
	}
	var header http.Header
	if offset > 0 {
		header = http.Header{"Range": {"bytes=" + strconv.FormatInt(offset, 10) + "-"}}
	}
	var resp *http.Response
	err = c.retry(ctx, o, func(ctx context.Context) error {
		var err error
		resp, err = c.send(ctx, o, http.MethodGet, c.endpoint(repo, "/blobs/"+d.String()), header, http.StatusOK, http.StatusPartialContent)
		return err
	})
	if err != nil {
		return nil, 0, 0, err
	}
	start, size = 0, resp.ContentLength
	if resp.StatusCode == http.StatusPartialContent {
		if start, size, err = partOf(resp, offset); err != nil {
			resp.Body.Close()
			return nil, 0, 0, o.badContent(resp.StatusCode, "BLOB_UNKNOWN", false, ErrBadRange, err.Error())
		}
	}
	return &blobBody{ReadCloser: resp.Body, o: o}, start, size, nil
}

// partOf checks that a 206 answer carries the open-ended range asked for,
// from offset to the end, and returns where it starts and the blob's size.
func partOf(resp *http.Response, offset int64) (start, size int64, err error) {
	first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	switch {
	case !ok:
		return 0, 0, fmt.Errorf("unreadable Content-Range %q", truncate(resp.Header.Get("Content-Range"), 64))
	case first != offset:
		return 0, 0, fmt.Errorf("range starts at %d, asked for %d", first, offset)
	case total >= 0 && last != total-1:
		return 0, 0, fmt.Errorf("range ends at %d of %d bytes, asked for all of the rest", last, total)
	case resp.ContentLength >= 0 && resp.ContentLength != last-first+1:
		return 0, 0, fmt.Errorf("Content-Length %d for a range of %d bytes", resp.ContentLength, last-first+1)
	}
	return first, total, nil
}

// parseContentRange reads "bytes first-last/total"; total is -1 for "*".
func parseContentRange(v string) (first, last, total int64, ok bool) {
	span, totalText, found := strings.Cut(strings.TrimPrefix(v, "bytes "), "/")
	firstText, lastText, dash := strings.Cut(span, "-")
	if !strings.HasPrefix(v, "bytes ") || !found || !dash {
		return 0, 0, 0, false
	}
	first, err1 := strconv.ParseInt(firstText, 10, 64)
	last, err2 := strconv.ParseInt(lastText, 10, 64)
	total = -1
	var err3 error
	if totalText != "*" {
		total, err3 = strconv.ParseInt(totalText, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// blobBody turns failures mid-body into *Errors, so callers see one error type.
type blobBody struct {
	io.ReadCloser
	o opError
}

func (b *blobBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.o.fromErr(err)
	}
	return n, err
}
