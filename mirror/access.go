package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/fill"
	"github.com/regmirror/regmirror/internal/ociserver"
)

// Reading by digest, and why it needs links.
//
// The cache stores each digest once, whichever repository it came through,
// but the mirror's credentials may read repositories its clients cannot. A
// digest is therefore served under a repository only when that repository
// holds it (a link: it was fetched through the repository, or its upstream
// sent bytes that hash to the digest, or it was pushed or mounted into it),
// or when some repository the client may read holds it anyway (public
// upstream content, exposed repositories, hosted repositories the client
// may pull). Anything else is confirmed with the repository's upstream by
// its bytes before it is served: a header or a 200 proves nothing.

// mayServe reports whether d may be served under t to the client without
// asking t's upstream first.
func (m *Mirror) mayServe(ctx context.Context, t target, d digest.Digest) (bool, error) {
	linked, err := m.cache.Linked(ctx, t.cacheKey(), d)
	if err != nil || linked {
		return linked, err
	}
	return m.readableElsewhere(ctx, d)
}

// readableElsewhere reports whether a repository that the client may read
// holds d.
func (m *Mirror) readableElsewhere(ctx context.Context, d digest.Digest) (bool, error) {
	cached, hosted, err := m.cache.Holders(ctx, d)
	if err != nil {
		return false, err
	}
	return m.readableHolder(ctx, cached, hosted), nil
}

// readableHolder reports whether the client may read one of the
// repositories that hold a blob: cached ones by cache key, hosted ones by
// hosted name.
func (m *Mirror) readableHolder(ctx context.Context, cached, hosted []string) bool {
	for _, key := range cached {
		if m.mayReadCached(ctx, key) {
			return true
		}
	}
	for _, name := range hosted {
		if m.mayPullHosted(ctx, name) {
			return true
		}
	}
	return false
}

// mayReadCached reports whether the client may read the cached repository
// key ("<host>/<path>") as the mirror knows it now, without asking its
// upstream: its registry is still mirrored and allows it, and it is public
// upstream (by an answer younger than visibilityTTL), exposed, or the
// client logged in. A request another replica forwarded is not a login:
// that replica authorized its client for the repository the request
// names, which checkExposure lets through, and for no other repository
// whose content the client might name by digest.
func (m *Mirror) mayReadCached(ctx context.Context, key string) bool {
	host, path, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	rem, ok := m.knownRemote(host)
	if !ok || !rem.permits(path) {
		return false
	}
	if rem.Visibility == nil || rem.exposes(path) || clientOf(ctx).loggedIn() {
		return true
	}
	known, ok := m.exposure.get(key)
	return ok && known.public && m.now().Sub(known.at) < visibilityTTL
}

// knownRemote returns the Remote serving host if there is one already; it
// never makes one.
func (m *Mirror) knownRemote(host string) (*Remote, bool) {
	table := m.remotes.Load()
	if rem, ok := table.byHost[host]; ok {
		return rem, true
	}
	if table.dynamic == nil {
		return nil, false
	}
	return table.dynamic.peek(host)
}

// confirmTimeout bounds the download that confirms a blob with an
// upstream; it runs detached from the client that asked, for all who ask.
const confirmTimeout = 30 * time.Minute

// confirmBlob downloads blob d through t's upstream and links it to t when
// the bytes hash to d. Concurrent callers for the same repository and
// digest share one download. With a bucket, a confirmation another
// replica recorded there is taken as it is, and this one's is recorded,
// so that the upstream is asked once across the replicas.
func (m *Mirror) confirmBlob(ctx context.Context, rem *Remote, t target, d digest.Digest) error {
	key := "confirm:" + t.cacheKey() + "@" + d.String()
	_, _, err := m.confirms.Do(ctx, key, confirmTimeout, func(ctx context.Context, _ *fill.Fill[struct{}]) (struct{}, error) {
		if m.confirmedInBucket(ctx, t, d) {
			return struct{}{}, m.cache.Link(ctx, t.cacheKey(), d)
		}
		err := m.hashUpstreamBlob(ctx, rem, t, d)
		m.metrics.confirmations.WithLabelValues(rem.Host, confirmationResult(err)).Inc()
		if err != nil {
			return struct{}{}, err
		}
		m.recordConfirmed(ctx, t, d)
		return struct{}{}, m.cache.Link(ctx, t.cacheKey(), d)
	})
	return err
}

// hashUpstreamBlob reads blob d from t's upstream and checks that it hashes
// to d, keeping nothing.
func (m *Mirror) hashUpstreamBlob(ctx context.Context, rem *Remote, t target, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return newError(ociserver.CodeDigestInvalid, "invalid digest %q", truncate(d.String()))
	}
	body, _, size, err := rem.Upstream.GetBlob(ctx, t.path, d, 0)
	if err != nil {
		return err
	}
	defer body.Close()
	verifier := d.Verifier()
	n, err := io.Copy(verifier, body)
	if err != nil {
		return fmt.Errorf("reading blob %s from %s: %w", d, rem.Host, err)
	}
	if (size >= 0 && n != size) || !verifier.Verified() {
		return &Error{Code: ociserver.CodeBlobUnknown, Err: errBlobNotSent, Message: fmt.Sprintf("upstream %s did not send blob %s for %s", rem.Host, d, truncate(t.path))}
	}
	return nil
}

// errBlobNotSent means an upstream answered a blob request with bytes that
// do not hash to the digest asked for.
var errBlobNotSent = errors.New("upstream sent other bytes than the digest names")

func confirmationResult(err error) string {
	switch {
	case err == nil:
		return "confirmed"
	case errors.Is(err, errBlobNotSent):
		return "refused"
	}
	return resultError
}

// mayPullHosted reports whether the client may pull the hosted repository
// name.
func (m *Mirror) mayPullHosted(ctx context.Context, name string) bool {
	return m.hosted != nil && m.hosted.allowed(clientOf(ctx), name, ActionPull)
}

// mayMount reports whether the client may mount blob d from the repository
// from (as a client names it) into a hosted one: from must hold d, and the
// client must be allowed to read from. Without from (an anonymous mount),
// some repository the client may read must hold d. Otherwise the client
// uploads d.
func (m *Mirror) mayMount(ctx context.Context, from string, d digest.Digest) (bool, error) {
	if from == "" {
		return m.readableElsewhere(ctx, d)
	}
	if m.hosted != nil {
		name, err := resolveHostedName(from, "", m.defaultHost)
		if err != nil {
			return false, nil
		}
		if m.hosted.isHostedName(name) {
			if !m.mayPullHosted(ctx, name) {
				return false, nil
			}
			_, err := m.hosted.store.StatBlob(ctx, name, d)
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return err == nil, err
		}
	}
	t, err := resolveTarget(from, "", m.defaultHost)
	if err != nil || !m.mayReadCached(ctx, t.cacheKey()) {
		return false, nil
	}
	return m.cache.Linked(ctx, t.cacheKey(), d)
}
