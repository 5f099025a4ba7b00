package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"

	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/admin"
	"github.com/regmirror/regmirror/internal/repoglob"
)

// PrefetchConfig is the `prefetch:` section: images the daemon fetches at
// start-up and again on a schedule, so that they are in the cache before
// any client asks, and keeps pinned while they are listed.
type PrefetchConfig struct {
	// Images are image references, "docker.io/library/node:20", with a tag
	// pattern resolved against the upstream's tag list
	// ("registry.k8s.io/kube-apiserver:v1.31.*"), or mappings with the
	// platforms of an index to fetch: {image: ..., platforms: [linux/amd64]}.
	Images []PrefetchImage `yaml:"images"`
	// Interval is how often the list is fetched again, for tags that moved
	// and tags new to a pattern (default 6h).
	Interval time.Duration `yaml:"interval"`
}

// defaultPrefetchInterval is how often the list is refreshed by default:
// a few times a day keeps up with rebuilt base images without asking the
// upstream often.
const defaultPrefetchInterval = 6 * time.Hour

func (c PrefetchConfig) interval() time.Duration {
	if c.Interval <= 0 {
		return defaultPrefetchInterval
	}
	return c.Interval
}

// PrefetchImage is one entry of prefetch.images.
type PrefetchImage struct {
	Image     string   `yaml:"image" json:"image"`
	Platforms []string `yaml:"platforms" json:"platforms,omitempty"`
}

// UnmarshalYAML reads "REF" or {image: REF, platforms: [...]}.
func (p *PrefetchImage) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*p = PrefetchImage{Image: node.Value}
		return nil
	}
	type plain PrefetchImage
	return node.Decode((*plain)(p))
}

// MarshalYAML writes an image without platforms as its plain reference.
func (p PrefetchImage) MarshalYAML() (any, error) {
	if len(p.Platforms) == 0 {
		return p.Image, nil
	}
	type plain PrefetchImage
	return plain(p), nil
}

func (c PrefetchConfig) validate() error {
	var errs []error
	for i, img := range c.Images {
		if _, err := parseImageRef(img.Image, img.Platforms...); err != nil {
			errs = append(errs, keyErrorf(fmt.Sprintf("prefetch.images[%d]", i), "prefetch.images: %v", err))
		}
	}
	if c.Interval < 0 {
		errs = append(errs, keyErrorf("prefetch.interval", "prefetch.interval must not be negative"))
	}
	return errors.Join(errs...)
}

// refs parses the images.
func (c PrefetchConfig) refs() ([]imageRef, error) {
	refs := make([]imageRef, 0, len(c.Images))
	for _, img := range c.Images {
		ref, err := parseImageRef(img.Image, img.Platforms...)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// pins keeps every listed image: its tag (or the tags its pattern
// matches), or its digest.
func (c PrefetchConfig) pins() (eviction.Pins, error) {
	refs, err := c.refs()
	if err != nil {
		return nil, err
	}
	pins := make(eviction.Pins, len(refs))
	for i, r := range refs {
		pins[i] = r.pin()
	}
	return pins, nil
}

// imageRef is a parsed image reference of a prefetch list.
type imageRef struct {
	// Host is the registry ("docker.io"), Repo the repository in it
	// ("library/node").
	Host, Repo string
	// Tag is a tag or a tag pattern (repoglob.MatchTag); empty with a digest.
	Tag       string
	Digest    digest.Digest
	Platforms []string
}

// parseImageRef reads a reference as docker pull and image lists write
// them: "node:20", "docker.io/library/node:20", "quay.io/calico/node:v3.26.4",
// "registry.k8s.io/kube-apiserver:v1.31.*" (a tag pattern), "x@sha256:...".
// Without a tag or digest the tag is "latest".
func parseImageRef(s string, platforms ...string) (imageRef, error) {
	s = strings.TrimSpace(s)
	name, dgst, hasDigest := strings.Cut(s, "@")
	var r imageRef
	if hasDigest {
		d, err := digest.Parse(dgst)
		if err != nil {
			return imageRef{}, fmt.Errorf("image %q: %w", s, err)
		}
		r.Digest = d
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, r.Tag = name[:i], name[i+1:]
		if repoglob.CheckTag(r.Tag) != nil || r.Tag == "" {
			return imageRef{}, fmt.Errorf("image %q: bad tag or tag pattern %q", s, r.Tag)
		}
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return imageRef{}, fmt.Errorf("image %q: %w", s, err)
	}
	r.Host, r.Repo = reference.Domain(named), reference.Path(named)
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	if r.Digest != "" {
		r.Tag = "" // the digest is what is fetched and pinned
	}
	pin, err := eviction.ParsePin(r.Host+"/"+r.Repo, platforms...)
	if err != nil {
		return imageRef{}, fmt.Errorf("image %q: %w", s, err)
	}
	r.Platforms = pin.Platforms
	return r, nil
}

// String writes the reference back, with a tag pattern as written.
func (r imageRef) String() string {
	s := r.Host + "/" + r.Repo
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// isPattern tells a tag pattern from a tag.
func (r imageRef) isPattern() bool { return strings.ContainsAny(r.Tag, "*?[") }

// name is the repository as the mirror's clients name it, with its registry.
func (r imageRef) name() string { return r.Host + "/" + r.Repo }

// pin keeps what r names.
func (r imageRef) pin() eviction.Pin {
	return eviction.Pin{Repo: r.name(), Tag: r.Tag, Digest: r.Digest, Platforms: r.Platforms}
}

// readImageList reads one reference per line, as Kubespray and air-gap
// tooling print image lists; blank lines and `#` comments are skipped.
func readImageList(text string) ([]PrefetchImage, error) {
	var images []PrefetchImage
	var errs []error
	for n, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if _, err := parseImageRef(line); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n+1, err))
			continue
		}
		images = append(images, PrefetchImage{Image: line})
	}
	return images, errors.Join(errs...)
}

// prefetchRequest is `regmirror prefetch`: an image list, or none for the
// configured one.
type prefetchRequest struct {
	Images []PrefetchImage `json:"images,omitempty"`
}

// errPrefetchNeedsDaemon: prefetching downloads through the mirror.
var errPrefetchNeedsDaemon = errors.New("prefetch needs the running daemon: it downloads through the mirror")

// prefetchCall runs a prefetch for the admin socket: the requested
// images, or listed, the configured ones.
func prefetchCall(pf *prefetcher, listed []imageRef) func(context.Context, prefetchRequest, func(admin.Progress)) (any, error) {
	return func(ctx context.Context, req prefetchRequest, progress func(admin.Progress)) (any, error) {
		refs, source := listed, "config"
		if len(req.Images) > 0 {
			var err error
			if refs, err = (PrefetchConfig{Images: req.Images}).refs(); err != nil {
				return nil, err
			}
			source = "admin"
		}
		if len(refs) == 0 {
			return nil, errors.New("no images to prefetch: prefetch.images is empty and no list was given")
		}
		return pf.fetch(ctx, source, refs, progress)
	}
}
