package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"
)

// GetBlob opens a blob download, following redirects to a CDN without the
// registry's credentials. size is the Content-Length, -1 when unknown. The
// caller verifies the digest; read failures are temporary *Errors.
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	o := opError{host: c.host, op: "get blob", repo: repo, ref: d.String(), notFoundCode: "BLOB_UNKNOWN"}
	if err := validRepo(repo); err != nil {
		return nil, 0, o.invalid(err)
	}
	if err := d.Validate(); err != nil {
		return nil, 0, o.invalid(err)
	}
	var resp *http.Response
	err := c.retry(ctx, o, func(ctx context.Context) error {
		var err error
		resp, err = c.send(ctx, o, http.MethodGet, c.endpoint(repo, "/blobs/"+d.String()), nil, http.StatusOK)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return &blobBody{ReadCloser: resp.Body, o: o}, resp.ContentLength, nil
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
