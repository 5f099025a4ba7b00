package mirror

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// Content reads stored manifests and blobs by digest.
type Content interface {
	// Manifest returns a stored manifest's media type and bytes.
	Manifest(ctx context.Context, d digest.Digest) (mediaType string, data []byte, err error)
	// ReadBlob opens a stored blob from offset and returns its size.
	ReadBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
}

// Browser describes a snapshot of the store by the names clients pull:
// repositories with their sizes, tags with their platforms, manifests with
// their layers. The mirror's API uses it with the asking client's rights;
// `regmirror cache ls` with none. Its zero value is not usable: Content
// is required.
type Browser struct {
	Content Content
	// DefaultHost is the registry whose repositories are named without a
	// host; empty means docker.io.
	DefaultHost string
	// MayRead, when set, hides the repositories it refuses.
	MayRead func(RepoRef) bool
}

// maxConfigSize caps the image config read to learn an image's platform.
const maxConfigSize = 1 << 20

// Repositories lists the repositories whose name contains q (any case).
func (b Browser) Repositories(snap Snapshot, q string) []Repository {
	q = strings.ToLower(q)
	idx := indexByRepo(snap)
	out := []Repository{}
	for _, s := range b.repos(snap) {
		if strings.Contains(strings.ToLower(s.name), q) {
			out = append(out, describeRepo(snap, idx, s))
		}
	}
	return out
}

// TagList is a repository's tags.
type TagList struct {
	Name string `json:"name"`
	Tags []Tag  `json:"tags"`
}

// Tags lists the repository's tags with their images' sizes and platforms.
// A repository that is not there, or hidden, fails with NAME_UNKNOWN.
func (b Browser) Tags(ctx context.Context, snap Snapshot, name string) (TagList, error) {
	s, err := b.find(snap, name)
	if err != nil {
		return TagList{}, err
	}
	manifests := manifestsByDigest(snap)
	tags := []Tag{}
	for _, t := range snap.Tags {
		if !slices.Contains(s.refs, t.Repo) {
			continue
		}
		tag := Tag{Name: t.Tag, Digest: t.Digest, Hosted: t.Repo.Hosted, FetchedAt: t.FetchedAt, Platforms: []string{}}
		if man, ok := manifests[t.Digest]; ok {
			tag.MediaType, tag.Pinned, tag.LastPulled = man.MediaType, man.Pinned, man.LastPulled
			if detail, err := b.describeManifest(ctx, snap, man); err == nil {
				tag.Size, tag.Platforms = detail.TotalSize, detail.platforms()
			}
		}
		tags = append(tags, tag)
	}
	slices.SortFunc(tags, func(a, b Tag) int { return cmp.Compare(a.Name, b.Name) })
	return TagList{Name: s.name, Tags: tags}, nil
}

// Manifest describes manifest d of the repository: an index's platforms,
// an image's layers with their sizes. It fails with NAME_UNKNOWN or
// MANIFEST_UNKNOWN when the repository does not (visibly) hold it.
func (b Browser) Manifest(ctx context.Context, snap Snapshot, name string, d digest.Digest) (ManifestDetail, error) {
	s, err := b.find(snap, name)
	if err != nil {
		return ManifestDetail{}, err
	}
	man, ok := manifestsByDigest(snap)[d]
	if !ok || !holds(man, s) {
		return ManifestDetail{}, newError(ociserver.CodeManifestUnknown, "%s does not hold manifest %s", truncate(name), d)
	}
	detail, err := b.describeManifest(ctx, snap, man)
	if err != nil {
		return ManifestDetail{}, err
	}
	detail.Repository = s.name
	return detail, nil
}

// repoSummary is one repository as a client sees it: a name as clients pull
// it, and the stored repositories behind that name (a hosted repository and
// its upstream namesake share one).
type repoSummary struct {
	name   string
	refs   []RepoRef
	hosted bool
}

// visibleName is the name under which clients pull the stored repository:
// the path alone on the default registry, host and path elsewhere.
func (b Browser) visibleName(ref RepoRef) string {
	if ref.Hosted {
		return ref.Name
	}
	host := cmp.Or(canonicalHost(b.DefaultHost), dockerHub)
	if path, ok := strings.CutPrefix(ref.Name, host+"/"); ok {
		return path
	}
	return ref.Name
}

// repos lists, sorted by name, the repositories in snap that MayRead
// allows: those holding a tag or a manifest.
func (b Browser) repos(snap Snapshot) []repoSummary {
	seen := make(map[RepoRef]bool)
	byName := make(map[string]*repoSummary)
	add := func(ref RepoRef) {
		if seen[ref] {
			return
		}
		seen[ref] = true
		if b.MayRead != nil && !b.MayRead(ref) {
			return
		}
		name := b.visibleName(ref)
		s, ok := byName[name]
		if !ok {
			s = &repoSummary{name: name}
			byName[name] = s
		}
		s.refs = append(s.refs, ref)
		s.hosted = s.hosted || ref.Hosted
	}
	for _, t := range snap.Tags {
		add(t.Repo)
	}
	for _, man := range snap.Manifests {
		for _, ref := range man.Repos {
			add(ref)
		}
	}
	repos := make([]repoSummary, 0, len(byName))
	for _, s := range byName {
		repos = append(repos, *s)
	}
	slices.SortFunc(repos, func(a, b repoSummary) int { return strings.Compare(a.name, b.name) })
	return repos
}

// Repository is one repository in the API's answers.
type Repository struct {
	// Name is what clients pull: "library/node", "ghcr.io/org/app", "team/app".
	Name string `json:"name"`
	// Hosted is true for repositories clients push to, Cached for ones
	// filled from an upstream; a hosted name that falls through is both.
	Hosted bool `json:"hosted"`
	Cached bool `json:"cached"`
	Tags   int  `json:"tags"`
	// Manifests counts the manifests the repository holds.
	Manifests int `json:"manifests"`
	// Size is the stored bytes of its manifests and the blobs they name,
	// each counted once.
	Size int64 `json:"size"`
	// LastPulled is when one of its manifests was last read.
	LastPulled time.Time `json:"last_pulled"`
	// Pinned is true when one of its manifests is kept from eviction.
	Pinned bool `json:"pinned"`
}

// Tag is one tag in the API's answers.
type Tag struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type,omitempty"`
	// Size is the image's bytes: config and layers, of every platform of an index.
	Size int64 `json:"size"`
	// Platforms lists "os/arch[/variant]" of the image or of an index's images.
	Platforms  []string  `json:"platforms"`
	Hosted     bool      `json:"hosted"`
	Pinned     bool      `json:"pinned"`
	LastPulled time.Time `json:"last_pulled,omitzero"`
	// FetchedAt is when the upstream last confirmed the tag, or it was pushed.
	FetchedAt time.Time `json:"fetched_at,omitzero"`
}

// ManifestDetail is one manifest in the API's answers.
type ManifestDetail struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"media_type"`
	Size       int64         `json:"size"`
	TotalSize  int64         `json:"total_size"`
	Pinned     bool          `json:"pinned"`
	LastPulled time.Time     `json:"last_pulled"`
	// Platform is the platform of an image; Manifests are an index's images.
	Platform  string          `json:"platform,omitempty"`
	Manifests []PlatformImage `json:"manifests,omitempty"`
	Config    *Layer          `json:"config,omitempty"`
	Layers    []Layer         `json:"layers,omitempty"`
}

// PlatformImage is one image of an index.
type PlatformImage struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type"`
	Platform  string        `json:"platform"`
	Size      int64         `json:"size"`
	Cached    bool          `json:"cached"`
}

// Layer is a blob an image names.
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type"`
	Size      int64         `json:"size"`
	// Cached is true when the store holds the blob.
	Cached bool `json:"cached"`
}

// byRepo indexes a snapshot by repository, so that summing up every
// repository takes one pass over the snapshot, not one per repository.
type byRepo struct {
	tags      map[RepoRef]int
	manifests map[RepoRef][]int // indexes into Snapshot.Manifests
}

func indexByRepo(snap Snapshot) byRepo {
	idx := byRepo{tags: make(map[RepoRef]int), manifests: make(map[RepoRef][]int)}
	for _, t := range snap.Tags {
		idx.tags[t.Repo]++
	}
	for i, man := range snap.Manifests {
		for _, ref := range man.Repos {
			idx.manifests[ref] = append(idx.manifests[ref], i)
		}
	}
	return idx
}

// describeRepo sums up what the store holds for one repository: each
// manifest and blob once, also when both a hosted repository and its
// upstream namesake hold it.
func describeRepo(snap Snapshot, idx byRepo, s repoSummary) Repository {
	repo := Repository{Name: s.name, Hosted: s.hosted, Cached: slices.ContainsFunc(s.refs, func(r RepoRef) bool { return !r.Hosted })}
	seenManifest := make(map[int]bool)
	seenBlob := make(map[digest.Digest]bool)
	for _, ref := range s.refs {
		repo.Tags += idx.tags[ref]
		for _, i := range idx.manifests[ref] {
			if seenManifest[i] {
				continue
			}
			seenManifest[i] = true
			man := snap.Manifests[i]
			repo.Manifests++
			repo.Size += man.Size
			repo.Pinned = repo.Pinned || man.Pinned
			if man.LastPulled.After(repo.LastPulled) {
				repo.LastPulled = man.LastPulled
			}
			for _, b := range man.Blobs {
				if !seenBlob[b] {
					seenBlob[b] = true
					repo.Size += snap.BlobSizes[b]
				}
			}
		}
	}
	return repo
}

func holds(man SnapshotManifest, s repoSummary) bool {
	return slices.ContainsFunc(man.Repos, func(r RepoRef) bool { return slices.Contains(s.refs, r) })
}

// find returns the repository name, if MayRead allows it.
func (b Browser) find(snap Snapshot, name string) (repoSummary, error) {
	for _, s := range b.repos(snap) {
		if s.name == name {
			return s, nil
		}
	}
	return repoSummary{}, newError(ociserver.CodeNameUnknown, "repository %s is not in the inventory", truncate(name))
}

func manifestsByDigest(snap Snapshot) map[digest.Digest]SnapshotManifest {
	out := make(map[digest.Digest]SnapshotManifest, len(snap.Manifests))
	for _, man := range snap.Manifests {
		out[man.Digest] = man
	}
	return out
}

// platforms lists the platforms of an image or of an index's images.
func (d ManifestDetail) platforms() []string {
	if d.Platform != "" {
		return []string{d.Platform}
	}
	out := []string{}
	for _, img := range d.Manifests {
		if img.Platform != "" && img.Platform != "unknown/unknown" && !slices.Contains(out, img.Platform) {
			out = append(out, img.Platform)
		}
	}
	return out
}

// manifestParts is the part of image manifests and indexes the API shows.
type manifestParts struct {
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

// describeManifest reads a stored manifest: an index's images with their
// platforms and sizes, or an image's config, layers and platform.
func (b Browser) describeManifest(ctx context.Context, snap Snapshot, man SnapshotManifest) (ManifestDetail, error) {
	_, data, err := b.Content.Manifest(ctx, man.Digest)
	if err != nil {
		return ManifestDetail{}, notFoundOrErr(err, ociserver.KindManifest)
	}
	var parts manifestParts
	if err := json.Unmarshal(data, &parts); err != nil {
		return ManifestDetail{}, newError(ociserver.CodeManifestInvalid, "manifest %s does not parse: %v", man.Digest, err)
	}
	detail := ManifestDetail{Digest: man.Digest, MediaType: man.MediaType, Size: man.Size,
		Pinned: man.Pinned, LastPulled: man.LastPulled, TotalSize: man.Size}
	if parts.Config != nil {
		detail.Config = layerOf(snap, *parts.Config)
		detail.TotalSize += parts.Config.Size
		detail.Platform = b.configPlatform(ctx, *parts.Config)
	}
	for _, l := range parts.Layers {
		detail.Layers = append(detail.Layers, *layerOf(snap, l))
		detail.TotalSize += l.Size
	}
	children := manifestsByDigest(snap)
	for _, c := range parts.Manifests {
		img := PlatformImage{Digest: c.Digest, MediaType: c.MediaType, Platform: platformString(c.Platform), Size: c.Size}
		if child, ok := children[c.Digest]; ok {
			img.Cached = true
			if cd, err := b.describeManifest(ctx, snap, child); err == nil && len(cd.Manifests) == 0 {
				img.Size = cd.TotalSize
			}
		}
		detail.Manifests = append(detail.Manifests, img)
		detail.TotalSize += img.Size
	}
	return detail, nil
}

func layerOf(snap Snapshot, d ocispec.Descriptor) *Layer {
	_, cached := snap.BlobSizes[d.Digest]
	return &Layer{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, Cached: cached}
}

// configPlatform reads an image's platform from its cached config; empty
// when the config is not cached or says none.
func (b Browser) configPlatform(ctx context.Context, config ocispec.Descriptor) string {
	if config.Size > maxConfigSize {
		return ""
	}
	rc, _, err := b.Content.ReadBlob(ctx, config.Digest, 0)
	if err != nil {
		return ""
	}
	defer rc.Close()
	var p ocispec.Platform
	if json.NewDecoder(io.LimitReader(rc, maxConfigSize)).Decode(&p) != nil {
		return ""
	}
	return platformString(&p)
}

func platformString(p *ocispec.Platform) string {
	if p == nil || p.OS == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
