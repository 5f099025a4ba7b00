package mirror

import (
	"context"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// pullPolicy refuses the pulls its check refuses before its Reader hears
// of them; the catalog passes, since it lists only what the client may
// read anyway. Adding a policy is writing one check.
type pullPolicy struct {
	ociserver.Reader
	// check refuses a pull of kind k from repo, or returns the context to
	// serve it with (carrying the route it resolved, see routeOf).
	check func(ctx context.Context, repo ociserver.Repo, k kind) (context.Context, error)
}

var _ ociserver.Reader = pullPolicy{}

func (p pullPolicy) GetManifest(ctx context.Context, repo ociserver.Repo, ref string) (*ociserver.Manifest, error) {
	ctx, err := p.check(ctx, repo, ociserver.KindManifest)
	return then(err, func() (*ociserver.Manifest, error) { return p.Reader.GetManifest(ctx, repo, ref) })
}

func (p pullPolicy) GetBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	ctx, err := p.check(ctx, repo, ociserver.KindBlob)
	return then(err, func() (*ociserver.Blob, error) { return p.Reader.GetBlob(ctx, repo, d, offset) })
}

func (p pullPolicy) Tags(ctx context.Context, repo ociserver.Repo) ([]string, error) {
	ctx, err := p.check(ctx, repo, ociserver.KindTags)
	return then(err, func() ([]string, error) { return p.Reader.Tags(ctx, repo) })
}

func (p pullPolicy) Referrers(ctx context.Context, repo ociserver.Repo, d digest.Digest) ([]ocispec.Descriptor, error) {
	ctx, err := p.check(ctx, repo, ociserver.KindReferrers)
	return then(err, func() ([]ocispec.Descriptor, error) { return p.Reader.Referrers(ctx, repo, d) })
}

// checkAllowed is the policy of a Remote's Allow and Deny lists: a refused
// pull touches neither the cache nor the upstream.
func (m *Mirror) checkAllowed(ctx context.Context, repo ociserver.Repo, _ kind) (context.Context, error) {
	ctx, rt, err := m.routeOf(ctx, repo)
	if err != nil {
		return ctx, err
	}
	if !rt.rem.permits(rt.t.path) {
		return ctx, newError(ociserver.CodeDenied, "%s/%s is not mirrored here: the mirror's policy for %s does not allow it",
			rt.t.host, truncate(rt.t.path), rt.t.host)
	}
	return ctx, nil
}

// checkExposure is the policy of a Remote's Visibility and Expose list:
// see checkExposed.
func (m *Mirror) checkExposure(ctx context.Context, repo ociserver.Repo, k kind) (context.Context, error) {
	ctx, rt, err := m.routeOf(ctx, repo)
	if err != nil {
		return ctx, err
	}
	return ctx, m.checkExposed(ctx, rt.rem, rt.t, k)
}

// route is where a proxied pull goes: its upstream and the repository there.
type route struct {
	rem *Remote
	t   target
}

type routeKey struct{}

// routedRepo is a route remembered for the pull of one repository.
type routedRepo struct {
	repo  ociserver.Repo
	route route
}

// routeOf routes a pull of repo to its upstream registry, once per
// request: the policies and the proxy behind them share the answer
// through the context it returns.
func (m *Mirror) routeOf(ctx context.Context, repo ociserver.Repo) (context.Context, route, error) {
	if known, ok := ctx.Value(routeKey{}).(*routedRepo); ok && known.repo == repo {
		return ctx, known.route, nil
	}
	t, err := resolveTarget(repo.Name, repo.NS, m.defaultHost)
	if err != nil {
		return ctx, route{}, err
	}
	rem, err := m.remote(t.host)
	if err != nil {
		return ctx, route{}, err
	}
	noteUpstream(ctx, t.host)
	noteRepository(ctx, t.path)
	rt := route{rem: rem, t: t}
	return context.WithValue(ctx, routeKey{}, &routedRepo{repo: repo, route: rt}), rt, nil
}
