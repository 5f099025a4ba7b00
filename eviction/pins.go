package eviction

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/repoglob"
)

// Pin keeps images out of automatic eviction and prune: their manifests and
// every blob those manifests name.
type Pin struct {
	// Repo is a repository glob, matched like Globs: with or without the
	// registry, `*` within a component, `**` across components.
	Repo string
	// Tag is a tag pattern (repoglob.MatchTag), e.g. "20*". Empty pins every
	// manifest of the repositories; otherwise only the manifests that a
	// matching tag points to (as cached: a tag that moves takes its pin along).
	Tag string
	// Digest, when set, pins only that manifest (with Repo matching).
	Digest digest.Digest
	// Platforms limit what a pinned index keeps to the children of these
	// platforms, "os/arch" or "os/arch/variant"; none keeps all of them.
	Platforms []string
}

// ParsePin reads "REPO[:TAG]", e.g. "library/node:20*" or "ghcr.io/team/**".
// A colon before the last `/` is a registry's port, not a tag.
func ParsePin(s string, platforms ...string) (Pin, error) {
	p := Pin{Repo: s, Platforms: platforms}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		p.Repo, p.Tag = s[:i], s[i+1:]
		if p.Tag == "" {
			return Pin{}, fmt.Errorf("pin %q: empty tag pattern", s)
		}
	}
	if p.Repo == "" {
		return Pin{}, fmt.Errorf("pin %q: no repository", s)
	}
	if err := repoglob.Check(p.Repo); err != nil {
		return Pin{}, fmt.Errorf("pin %q: %w", s, err)
	}
	if err := repoglob.CheckTag(p.Tag); err != nil {
		return Pin{}, fmt.Errorf("pin %q: %w", s, err)
	}
	for _, pl := range platforms {
		if n := strings.Count(pl, "/"); n < 1 || n > 2 || strings.Contains(pl, "//") {
			return Pin{}, fmt.Errorf("pin %q: platform %q: want os/arch or os/arch/variant", s, pl)
		}
	}
	return p, nil
}

// String writes the pin as ParsePin reads it, with its platforms.
func (p Pin) String() string {
	s := p.Repo
	if p.Tag != "" {
		s += ":" + p.Tag
	}
	if len(p.Platforms) > 0 {
		s += " (" + strings.Join(p.Platforms, ", ") + ")"
	}
	return s
}

// Pins are the pins in force; the zero value pins nothing.
type Pins []Pin

// RepoTag is a tag of a cached repository.
type RepoTag struct {
	Repo, Tag string
}

// selects reports whether the pin names manifest m.
func (p Pin) selects(m *Manifest) bool {
	if p.Digest != "" && p.Digest != m.Digest {
		return false
	}
	if p.Tag == "" {
		return slices.ContainsFunc(m.Repos, func(r string) bool { return matchRepo(p.Repo, r) })
	}
	return slices.ContainsFunc(m.Tags, func(t RepoTag) bool {
		return repoglob.MatchTag(p.Tag, t.Tag) && matchRepo(p.Repo, t.Repo)
	})
}

// platformOf is the platform of m's i-th child, "" when unknown.
func (m *Manifest) platformOf(i int) string {
	if i < len(m.Platforms) {
		return m.Platforms[i]
	}
	return ""
}

// protectedManifests are the kept manifests with their children, and the
// pinned ones (see pinnedManifests).
func protectedManifests(manifests map[digest.Digest]*Manifest, pinned map[digest.Digest]bool) map[digest.Digest]bool {
	kept := make(map[digest.Digest]bool)
	for d, m := range manifests {
		if m.Kept {
			protect(manifests, kept, d, nil, 0)
		}
	}
	for d := range pinned {
		kept[d] = true
	}
	return kept
}

// pinnedManifests are the manifests pins select and their children.
func pinnedManifests(manifests map[digest.Digest]*Manifest, pins Pins) map[digest.Digest]bool {
	pinned := make(map[digest.Digest]bool)
	// Whole images first, so that a pin of some platforms does not mark an
	// index done before a pin of all of them has walked its children.
	for _, withPlatforms := range []bool{false, true} {
		for _, p := range pins {
			if (len(p.Platforms) > 0) != withPlatforms {
				continue
			}
			for d, m := range manifests {
				if p.selects(m) {
					protect(manifests, pinned, d, p.Platforms, 0)
				}
			}
		}
	}
	return pinned
}

// protect adds d to set with its children: those of platforms when some
// are given, and every descendant of those.
func protect(manifests map[digest.Digest]*Manifest, set map[digest.Digest]bool, d digest.Digest, platforms []string, depth int) {
	m, ok := manifests[d]
	if !ok || set[d] || depth > maxIndexDepth {
		return
	}
	set[d] = true
	for i, child := range m.Manifests {
		if len(platforms) == 0 || slices.Contains(platforms, m.platformOf(i)) {
			protect(manifests, set, child, nil, depth+1)
		}
	}
}

// blobsOf are the blobs that the manifests of set name.
func blobsOf(manifests map[digest.Digest]*Manifest, set map[digest.Digest]bool) map[digest.Digest]bool {
	blobs := make(map[digest.Digest]bool)
	for d := range set {
		for _, b := range manifests[d].Blobs {
			blobs[b] = true
		}
	}
	return blobs
}

// Repos returns the repository globs of the pins, whatever tags and
// platforms they name: what a listing marks as pinned.
func (p Pins) Repos() Globs {
	globs := make(Globs, len(p))
	for i, pin := range p {
		globs[i] = pin.Repo
	}
	return globs
}
