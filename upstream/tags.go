package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Bounds on tag listing, so a broken or hostile registry cannot make the
// client loop or buffer without end: per page, and for the whole listing
// (pages × page size alone would allow gigabytes). The largest public
// repositories have tens of thousands of tags.
const (
	maxTagPages    = 1000
	maxTagPageSize = 4 << 20
	// MaxTags and MaxTagListSize cap a whole listing: its tags, and the
	// bytes of all its pages together.
	MaxTags        = 100_000
	MaxTagListSize = 16 << 20
)

// ListTags returns all tags of repo, following Link pagination. Each page
// is bounded by Config.Timeout; a listing of more than MaxTags tags or
// MaxTagListSize bytes fails with ErrTagListTooLarge, before more pages
// are fetched. nextPage, when set, is asked before every page after the
// first; its error ends the listing with that error, so a caller can
// charge every upstream request to whoever made it.
func (c *Client) ListTags(ctx context.Context, repo string, nextPage func() error) ([]string, error) {
	o := opError{host: c.host, op: "list tags", repo: repo, notFoundCode: "NAME_UNKNOWN"}
	if err := validRepo(repo); err != nil {
		return nil, o.invalid(err)
	}
	var tags []string
	var size int
	next := c.endpoint(repo, "/tags/list")
	for page := 0; next != ""; page++ {
		if page == maxTagPages {
			return nil, tooManyTags(o, fmt.Sprintf("more than %d pages of tags", maxTagPages))
		}
		if page > 0 && nextPage != nil {
			if err := nextPage(); err != nil {
				return nil, err
			}
		}
		pageTags, pageSize, link, err := c.tagsPageWithRetries(ctx, o, next)
		if err != nil {
			return nil, err
		}
		tags = append(tags, pageTags...)
		size += pageSize
		switch {
		case len(tags) > MaxTags:
			return nil, tooManyTags(o, fmt.Sprintf("more than %d tags", MaxTags))
		case size > MaxTagListSize:
			return nil, tooManyTags(o, fmt.Sprintf("tag list exceeds %d bytes", MaxTagListSize))
		}
		if next, err = c.nextPage(next, link); err != nil {
			return nil, o.badContent(http.StatusOK, "UNKNOWN", false, err, err.Error())
		}
	}
	return tags, nil
}

// ErrTagListTooLarge: a tag listing exceeds MaxTags, MaxTagListSize or
// its page bounds.
var ErrTagListTooLarge = errors.New("tag list too large")

// tooManyTags makes the error for a listing beyond its bounds; retrying
// would fetch the same pages again.
func tooManyTags(o opError, msg string) *Error {
	return o.badContent(http.StatusOK, "UNKNOWN", false, ErrTagListTooLarge, msg)
}

// tagsPageWithRetries fetches one page of a tag list: its tags, its size
// in bytes and its Link header.
func (c *Client) tagsPageWithRetries(ctx context.Context, o opError, target string) (tags []string, size int, link string, err error) {
	tooBig := func() *Error {
		return tooManyTags(o, fmt.Sprintf("tag list page exceeds %d bytes", maxTagPageSize))
	}
	page, err := c.pageWithRetries(ctx, o, target, nil, maxTagPageSize, tooBig)
	if err != nil {
		return nil, 0, "", err
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(page.body, &list); err != nil {
		return nil, 0, "", o.badContent(page.status, "UNKNOWN", false, err, "tag list is not valid JSON")
	}
	return list.Tags, len(page.body), page.link, nil
}

// listingPage is one page of a paged listing (tags, referrers).
type listingPage struct {
	body   []byte
	status int
	link   string // the Link header, which names the next page
}

// pageWithRetries fetches one page of a paged listing within
// Config.Timeout: a body of at most limit bytes, or tooBig's error.
func (c *Client) pageWithRetries(ctx context.Context, o opError, target string, header http.Header,
	limit int, tooBig func() *Error) (listingPage, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var page listingPage
	err := c.retry(ctx, o, func(ctx context.Context) error {
		resp, err := c.send(ctx, o, http.MethodGet, target, header, http.StatusOK)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
		if err != nil {
			return o.fromErr(err)
		}
		if len(body) > limit {
			return tooBig()
		}
		page = listingPage{body: body, status: resp.StatusCode, link: resp.Header.Get("Link")}
		return nil
	})
	return page, err
}

// nextPage resolves a `Link: <url>; rel="next"` header against the current
// page. The next page must be on the registry itself: the transport only
// authenticates there.
func (c *Client) nextPage(current, link string) (string, error) {
	for part := range strings.SplitSeq(link, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.TrimSpace(target)
		target = strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">")
		base, err := url.Parse(current)
		if err != nil {
			return "", err
		}
		ref, err := url.Parse(target)
		if err != nil {
			return "", fmt.Errorf("invalid Link header: %w", err)
		}
		u := base.ResolveReference(ref)
		if u.Host != c.base.Host || u.Scheme != c.base.Scheme {
			return "", fmt.Errorf("next page links to another host %s", u.Host)
		}
		return u.String(), nil
	}
	return "", nil
}
