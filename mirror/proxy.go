package mirror

import (
	"context"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// proxy reads proxied repositories: from the cache, filled from upstream
// registries, with tag freshness, visibility and per-upstream limits. It
// takes no writes: readOnly makes it a whole backend.
type proxy struct{ m *Mirror }

var _ ociserver.Reader = proxy{}

func (p proxy) GetManifest(ctx context.Context, repo ociserver.Repo, ref string) (*ociserver.Manifest, error) {
	rem, t, err := p.m.remoteFor(ctx, repo)
	if err != nil {
		return nil, err
	}
	var mf manifest
	if strings.Contains(ref, ":") { // a digest: ParseRequest checked it
		mf, err = p.m.manifestByDigest(ctx, rem, t, digest.Digest(ref))
	} else {
		mf, err = p.m.manifestByTag(ctx, rem, t, ref)
	}
	if err != nil {
		return nil, err
	}
	return &mf, nil
}

func (p proxy) GetBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	rem, t, err := p.m.remoteFor(ctx, repo)
	if err != nil {
		return nil, err
	}
	return p.m.openBlob(ctx, rem, t, d, offset)
}

func (p proxy) Tags(ctx context.Context, repo ociserver.Repo) ([]string, error) {
	return p.m.proxiedTags(ctx, repo)
}

func (p proxy) Referrers(ctx context.Context, repo ociserver.Repo, d digest.Digest) ([]ocispec.Descriptor, error) {
	rem, t, err := p.m.remoteFor(ctx, repo)
	if err != nil {
		return nil, err
	}
	return p.m.referrersOf(ctx, rem, t, d)
}

func (p proxy) Catalog(ctx context.Context) ([]string, error) { return p.m.catalog(ctx) }
