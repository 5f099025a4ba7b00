package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
	"github.com/regmirror/regmirror/internal/fill"
)

// Content is stored once per digest, but it is held by repositories: a
// link (repository, digest) records that the content was fetched through
// that repository from its upstream, or pushed or mounted into it. The
// mirror serves a digest under a repository only through a link, so that a
// digest alone never reads what another repository's credentials fetched.

// ErrNotLinked means the content is stored, or being downloaded, but not
// for the repository that asked for it.
var ErrNotLinked = errors.New("held by other repositories only")

// NotLinkedError is FetchBlob's refusal to serve a blob that repository
// Repo does not hold: the blob is stored for other repositories only.
type NotLinkedError struct {
	Digest digest.Digest
	Repo   string
}

func (e *NotLinkedError) Error() string {
	return fmt.Sprintf("blob %s is held by other repositories than %s", e.Digest, e.Repo)
}

func (e *NotLinkedError) Unwrap() error { return ErrNotLinked }

// NotHeldBy returns the repository that does not hold the blob.
func (e *NotLinkedError) NotHeldBy() string { return e.Repo }

// fillKey names a download: one per digest and repository, so that a
// repository's upstream never depends on another's download of the same
// digest (which may be hostile, or fail).
type fillKey struct {
	d    digest.Digest
	repo string
}

// Downloading returns the repositories for which d is being downloaded.
func (s *Store) Downloading(d digest.Digest) []string {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	return s.downloadingLocked(d)
}

func (s *Store) downloadingLocked(d digest.Digest) []string {
	var repos []string
	s.downloads.EachLocked(func(k fillKey, _ *fill.Fill[*download]) {
		if k.d == d {
			repos = append(repos, k.repo)
		}
	})
	return repos
}

// Linked reports whether the cached repository repo ("<host>/<path>")
// holds the blob or manifest d.
func (s *Store) Linked(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	if checkName("repository", repo) != nil || checkDigest(d) != nil {
		return false, nil
	}
	linked, err := s.db.Has(ctx, usedByKey(d, repo))
	if err != nil {
		return false, fmt.Errorf("is %s linked to %s: %w", d, repo, err)
	}
	return linked, nil
}

// Holders returns the repositories that hold d: cached ones by cache key
// ("<host>/<path>"), hosted ones by their hosted name.
func (s *Store) Holders(ctx context.Context, d digest.Digest) (cached, hosted []string, err error) {
	if checkDigest(d) != nil {
		return nil, nil, nil
	}
	prefix := prefixUsedBy + string(d) + fieldSep
	err = s.db.View(ctx, func(txn index.Reader) error {
		return txn.ScanKeys(ctx, []byte(prefix), func(kv index.Row) error {
			repo := string(kv.Key[len(prefix):])
			if name, ok := strings.CutPrefix(repo, hostedPrefix); ok {
				hosted = append(hosted, name)
			} else {
				cached = append(cached, repo)
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("holders of %s: %w", d, err)
	}
	return cached, hosted, nil
}

// Link records that the cached repository repo ("<host>/<path>") holds the
// stored blob or manifest d. The caller must have seen repo's upstream send
// bytes that hash to d. Content the store does not have is ignored.
func (s *Store) Link(ctx context.Context, repo string, d digest.Digest) error {
	if err := checkName("repository", repo); err != nil || strings.HasPrefix(repo, hostedPrefix) {
		return fmt.Errorf("link: %q is not a cached repository: %w", repo, ErrInvalidName)
	}
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	err := s.db.Update(ctx, func(txn index.Txn) error {
		kind, err := storedKind(txn, d)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return setReference(txn, repo, d, kind)
	})
	if err != nil {
		return fmt.Errorf("link %s to %s: %w", d, repo, err)
	}
	return nil
}

// requireBlobLink fails with a *NotLinkedError unless repo holds the blob d.
func (s *Store) requireBlobLink(ctx context.Context, repo string, d digest.Digest) error {
	linked, err := s.Linked(ctx, repo, d)
	switch {
	case err != nil:
		return err
	case !linked:
		return &NotLinkedError{Digest: d, Repo: repo}
	}
	return nil
}
