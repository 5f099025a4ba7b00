package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Public reports whether anyone may pull repo from the registry without
// credentials, so that the mirror passes on only what is public unless told
// otherwise. With credentials for the registry it asks as an anonymous
// client would: a ping, an anonymous token for repo, and a one-tag listing
// (3 requests); a 401 or 403 means private. A 404 fails with the
// registry's not-found *Error: there is nothing to pull, public or not.
// Without credentials it sends nothing: whatever the mirror can fetch is
// public. Otherwise it fails only when the registry gives no answer
// within Config.Timeout.
func (c *Client) Public(ctx context.Context, repo string) (bool, error) {
	o := opError{host: c.host, op: "check visibility", repo: repo, notFoundCode: "NAME_UNKNOWN"}
	if err := validRepo(repo); err != nil {
		return false, o.invalid(err)
	}
	auth, err := authn.Resolve(ctx, c.keys, c.keyTarget.Repo(repo))
	if err != nil {
		return false, o.fromErr(fmt.Errorf("%w: %w", errCredentials, err))
	}
	if auth == authn.Anonymous {
		return true, nil
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var public bool
	err = c.retry(ctx, o, func(ctx context.Context) error {
		var err error
		public, err = c.askAnonymously(ctx, o, repo)
		return err
	})
	return public, err
}

// askAnonymously lists one tag of repo with an anonymous token.
func (c *Client) askAnonymously(ctx context.Context, o opError, repo string) (bool, error) {
	rt, err := transport.NewWithContext(ctx, c.registry, authn.Anonymous, c.http, []string{"repository:" + repo + ":pull"})
	if err != nil {
		return false, refusalOrError(o.fromErr(err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(repo, "/tags/list?n=1"), nil)
	if err != nil {
		return false, o.fromErr(err)
	}
	resp, err := (&http.Client{Transport: rt, CheckRedirect: c.checkRedirect}).Do(req)
	if err != nil {
		return false, o.fromErr(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	if resp.StatusCode == http.StatusOK {
		return true, nil
	}
	return false, refusalOrError(o.fromStatus(resp.StatusCode, nil))
}

// refusalOrError is nil for an upstream answer that refuses an anonymous
// client (401, 403: the repository is private) and e otherwise.
func refusalOrError(e *Error) error {
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil
	}
	return e
}
