package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// errContentRange is returned, wrapped, when the owner's 206 does not say
// which bytes it holds.
var errContentRange = errors.New("peer sent a partial response without a usable Content-Range")

// GetBlob reads blob d of repository name on registry ns from owner, from
// offset on, the way a client of the owner would: GET
// /v2/<name>/blobs/<d>?ns=<ns>, with a Range when offset is past 0. start
// is where the body begins (offset when the owner honoured the range, 0
// when it sent the whole blob) and size the blob's size, -1 when the owner
// did not tell. The caller verifies the digest. Its errors are Forward's.
func (f *Forwarder) GetBlob(ctx context.Context, owner Peer, ns, name string, d digest.Digest, offset int64) (body io.ReadCloser, start, size int64, err error) {
	target := &url.URL{Path: "/v2/" + name + "/blobs/" + d.String(), RawQuery: url.Values{"ns": {ns}}.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("blob %s from %s: %w", d, owner, err)
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := f.Forward(ctx, owner, req)
	if err != nil {
		return nil, 0, 0, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, 0, resp.ContentLength, nil
	}
	start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok {
		resp.Body.Close()
		return nil, 0, 0, fmt.Errorf("blob %s from %s: %w", d, owner, errContentRange)
	}
	return resp.Body, start, size, nil
}

// parseContentRange reads "bytes <first>-<last>/<size or *>"; size is -1
// for "*".
func parseContentRange(v string) (first, size int64, ok bool) {
	spec, found := strings.CutPrefix(v, "bytes ")
	span, total, found2 := strings.Cut(spec, "/")
	firstStr, _, found3 := strings.Cut(span, "-")
	if !found || !found2 || !found3 {
		return 0, 0, false
	}
	first, err := strconv.ParseInt(firstStr, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false
	}
	if total == "*" {
		return first, -1, true
	}
	size, err = strconv.ParseInt(total, 10, 64)
	if err != nil || size <= first {
		return 0, 0, false
	}
	return first, size, true
}
