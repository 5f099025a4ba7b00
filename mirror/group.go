package mirror

import (
	"context"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// group serves pulls of hosted names from the hosted backend and of every
// other name from the proxy, like a Nexus group; writes go to the hosted
// backend. Hosted names are never looked up
// upstream, whoever registers them there, unless they fall through
// (HostedOptions.FallThrough): then what the hosted repository lacks is
// asked of the proxy, and tag and referrer listings merge both.
type group struct {
	// Writer takes every write: only hosted repositories take any, and
	// the hosted backend refuses other names.
	ociserver.Writer
	m      *Mirror
	hosted ociserver.Backend
	proxy  ociserver.Backend
}

var _ ociserver.Backend = group{}

// route returns the hosted name of repo and whether it is hosted.
func (g group) route(repo ociserver.Repo) (name string, hosted bool, err error) {
	name, err = resolveHostedName(repo.Name, repo.NS, g.m.defaultHost)
	if err != nil {
		return "", false, err
	}
	return name, g.m.hosted.isHostedName(name), nil
}

func (g group) GetManifest(ctx context.Context, repo ociserver.Repo, ref string) (*ociserver.Manifest, error) {
	return firstHeld(g, ctx, repo, ociserver.KindManifest, ref, func(b ociserver.Backend) (*ociserver.Manifest, error) {
		return b.GetManifest(ctx, repo, ref)
	})
}

func (g group) GetBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	return firstHeld(g, ctx, repo, ociserver.KindBlob, d.String(), func(b ociserver.Backend) (*ociserver.Blob, error) {
		return b.GetBlob(ctx, repo, d, offset)
	})
}

// firstHeld asks the hosted backend for a hosted name's content, then,
// when the repository lacks it and the name falls through, the proxy.
func firstHeld[T any](g group, ctx context.Context, repo ociserver.Repo, k kind, ref string,
	get func(ociserver.Backend) (T, error)) (T, error) {
	var none T
	name, hosted, err := g.route(repo)
	switch {
	case err != nil:
		return none, err
	case !hosted:
		return get(g.proxy)
	}
	v, err := get(g.hosted)
	switch {
	case !hostedNotFound(err):
		return v, err
	case g.m.hosted.fallsThrough(name):
		v, err = get(g.proxy)
		return v, hostedMiss(err, k, name, ref)
	}
	return none, hostedNotFoundError(k, name, ref, nil)
}

// Tags lists a hosted repository's tags, merged with the upstream's when
// the name falls through: the hosted tags alone, with a warning, when the
// upstream cannot list its own.
func (g group) Tags(ctx context.Context, repo ociserver.Repo) ([]string, error) {
	name, hosted, err := g.route(repo)
	switch {
	case err != nil:
		return nil, err
	case !hosted:
		return g.proxy.Tags(ctx, repo)
	case !g.m.hosted.fallsThrough(name):
		return g.hosted.Tags(ctx, repo)
	}
	tags, err := g.hosted.Tags(ctx, repo)
	if err != nil && !hostedNotFound(err) {
		return nil, err
	}
	upstreamTags, err := g.proxy.Tags(ctx, repo)
	switch {
	case err == nil:
		return append(tags, upstreamTags...), nil
	case len(tags) == 0:
		return nil, hostedMiss(err, ociserver.KindTags, name, "")
	case !deniesName(err):
		// Only a failure is warned of. An upstream that does not know the
		// name, or refuses it to this client, leaves the hosted tags as the
		// whole answer, as for referrers: a warning would tell a private
		// namesake from none.
		g.m.log.WarnContext(ctx, "listing hosted tags without the upstream's", "repository", name, "error", err)
		ociserver.Warn(ctx, 199, "upstream tags unavailable; listing hosted tags only")
	}
	return tags, nil
}

// Referrers lists a hosted manifest's referrers, merged with the
// upstream's when the name falls through.
func (g group) Referrers(ctx context.Context, repo ociserver.Repo, d digest.Digest) ([]ocispec.Descriptor, error) {
	name, hosted, err := g.route(repo)
	switch {
	case err != nil:
		return nil, err
	case !hosted:
		return g.proxy.Referrers(ctx, repo, d)
	}
	descs, err := g.hosted.Referrers(ctx, repo, d)
	if err != nil || !g.m.hosted.fallsThrough(name) {
		return descs, err
	}
	upstreamDescs, err := g.proxy.Referrers(ctx, repo, d)
	switch {
	case err == nil:
		for _, u := range upstreamDescs {
			if !slices.ContainsFunc(descs, func(h ocispec.Descriptor) bool { return h.Digest == u.Digest }) {
				descs = append(descs, u)
			}
		}
	case deniesName(err):
		// The upstream does not know the name, or the client may not
		// read it there: the hosted referrers are the whole answer.
	case len(descs) == 0:
		return nil, err
	default:
		g.m.log.WarnContext(ctx, "listing hosted referrers without the upstream's", "repository", name, "error", err)
		ociserver.Warn(ctx, 199, "upstream referrers unavailable; listing hosted referrers only")
	}
	return descs, nil
}

// Catalog lists what the inventory holds, hosted and cached; without an
// inventory, the hosted repositories.
func (g group) Catalog(ctx context.Context) ([]string, error) {
	if g.m.inventory == nil {
		return g.hosted.Catalog(ctx)
	}
	return g.proxy.Catalog(ctx)
}
