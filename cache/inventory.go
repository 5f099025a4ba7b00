package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// BlobInfo describes one cached blob.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	Created time.Time
	// LastAccess includes reads not yet flushed to the index.
	LastAccess time.Time
	// Kept means Keep marked the blob: it must never be removed.
	Kept bool
	// Repos are the repositories known to use the blob. Blobs lists them
	// only when asked to (Inventory does).
	Repos []string
}

// ManifestInfo describes one cached manifest.
type ManifestInfo struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
	// Cost is what the manifest counts against the budget, with the tags
	// that point to it, which go with it (see Store.Usage).
	Cost    int64
	Created time.Time
	// LastAccess includes reads not yet flushed to the index; it is Created
	// for a manifest never read since it was stored.
	LastAccess time.Time
	// Kept means Keep marked the manifest: it must never be removed.
	Kept bool
	// Repos are the repositories known to use the manifest.
	Repos []string
	// Blobs are the blobs the manifest names: its config and layers.
	Blobs []digest.Digest
	// Manifests are the manifests an index names.
	Manifests []digest.Digest
}

// TagInfo is one cached tag.
type TagInfo struct {
	Repo      string
	Tag       string
	Digest    digest.Digest
	FetchedAt time.Time
}

// Inventory is a consistent snapshot of everything the index holds.
type Inventory struct {
	Blobs     []BlobInfo
	Manifests []ManifestInfo
	Tags      []TagInfo
}

// Blobs lists every cached blob, without its repositories: what eviction
// needs, read in one pass over the blob rows.
func (s *Store) Blobs(ctx context.Context) ([]BlobInfo, error) {
	var blobs []BlobInfo
	err := s.db.View(ctx, func(txn index.Reader) error {
		kept, err := keptSet(ctx, txn)
		if err != nil {
			return err
		}
		blobs, err = s.scanBlobs(ctx, txn, kept, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	return blobs, nil
}

// Inventory reads the whole index in one transaction.
func (s *Store) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	err := s.db.View(ctx, func(txn index.Reader) error {
		kept, err := keptSet(ctx, txn)
		if err != nil {
			return err
		}
		users, err := scanUsers(ctx, txn)
		if err != nil {
			return err
		}
		if inv.Blobs, err = s.scanBlobs(ctx, txn, kept, users); err != nil {
			return err
		}
		if inv.Manifests, err = s.scanManifests(ctx, txn, kept, users); err != nil {
			return err
		}
		if inv.Tags, err = scanTags(ctx, txn); err != nil {
			return err
		}
		chargeTags(inv.Manifests, inv.Tags)
		return nil
	})
	if err != nil {
		return Inventory{}, fmt.Errorf("read inventory: %w", err)
	}
	return inv, nil
}

// scanUsers maps every referenced digest to the repositories that use it.
func scanUsers(ctx context.Context, txn index.Reader) (map[digest.Digest][]string, error) {
	users := make(map[digest.Digest][]string)
	err := txn.ScanKeys(ctx, []byte(prefixUsedBy), func(kv index.Row) error {
		d, repo, ok := bytes.Cut(kv.Key[len(prefixUsedBy):], []byte(fieldSep))
		if ok {
			users[digest.Digest(d)] = append(users[digest.Digest(d)], string(repo))
		}
		return nil
	})
	return users, err
}

func (s *Store) scanBlobs(ctx context.Context, txn index.Reader, kept map[digest.Digest]bool, users map[digest.Digest][]string) ([]BlobInfo, error) {
	var blobs []BlobInfo
	err := txn.Scan(ctx, []byte(prefixBlob), func(kv index.Row) error {
		d := digest.Digest(kv.Key[len(prefixBlob):])
		row, err := unmarshalBlobRow(kv.Value)
		if err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
		last := row.LastAccess
		if at, ok := s.access.pending(d); ok && at.After(last) {
			last = at
		}
		blobs = append(blobs, BlobInfo{Digest: d, Size: row.Size, Created: row.Created,
			LastAccess: last, Kept: kept[d], Repos: users[d]})
		return nil
	})
	return blobs, err
}

func (s *Store) scanManifests(ctx context.Context, txn index.Reader, kept map[digest.Digest]bool, users map[digest.Digest][]string) ([]ManifestInfo, error) {
	access, err := scanManifestAccess(ctx, txn)
	if err != nil {
		return nil, err
	}
	var manifests []ManifestInfo
	err = txn.Scan(ctx, []byte(prefixManifest), func(kv index.Row) error {
		d := digest.Digest(kv.Key[len(prefixManifest):])
		row, err := unmarshalManifestRow(kv.Value)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d, err)
		}
		info := ManifestInfo{Digest: d, MediaType: row.MediaType, Size: int64(len(row.Data)),
			Cost: manifestCost(kv.Key, kv.ValueSize), Created: row.Created, LastAccess: row.Created, Kept: kept[d], Repos: users[d]}
		for _, at := range []time.Time{access[d], s.pendingManifestAccess(d)} {
			if at.After(info.LastAccess) {
				info.LastAccess = at
			}
		}
		info.Blobs, info.Manifests = references(row.Data)
		manifests = append(manifests, info)
		return nil
	})
	return manifests, err
}

// chargeTags adds what each tag counts to the cost of its manifest.
func chargeTags(manifests []ManifestInfo, tags []TagInfo) {
	byDigest := make(map[digest.Digest]int, len(manifests))
	for i, m := range manifests {
		byDigest[m.Digest] = i
	}
	for _, t := range tags {
		if i, ok := byDigest[t.Digest]; ok {
			manifests[i].Cost += tagCost
		}
	}
}

func (s *Store) pendingManifestAccess(d digest.Digest) time.Time {
	at, _ := s.access.pendingManifest(d)
	return at
}

func scanManifestAccess(ctx context.Context, txn index.Reader) (map[digest.Digest]time.Time, error) {
	access := make(map[digest.Digest]time.Time)
	err := txn.Scan(ctx, []byte(prefixManifestAccess), func(kv index.Row) error {
		if ns, n := binary.Varint(kv.Value); n > 0 && ns != 0 {
			access[digest.Digest(kv.Key[len(prefixManifestAccess):])] = time.Unix(0, ns)
		}
		return nil
	})
	return access, err
}

func scanTags(ctx context.Context, txn index.Reader) ([]TagInfo, error) {
	var tags []TagInfo
	err := txn.Scan(ctx, []byte(prefixTag), func(kv index.Row) error {
		repo, tag, ok := bytes.Cut(kv.Key[len(prefixTag):], []byte(fieldSep))
		if !ok {
			return nil
		}
		row, err := unmarshalTagRow(kv.Value)
		if err != nil {
			return fmt.Errorf("tag %s:%s: %w", repo, tag, err)
		}
		tags = append(tags, TagInfo{Repo: string(repo), Tag: string(tag), Digest: row.Digest, FetchedAt: row.FetchedAt})
		return nil
	})
	return tags, err
}

// manifestRefs is the part of any manifest format (OCI and Docker image
// manifests and indexes, OCI artifacts, Docker schema 1) that names other
// content.
type manifestRefs struct {
	Config    *struct{ Digest digest.Digest }  `json:"config"`
	Layers    []struct{ Digest digest.Digest } `json:"layers"`
	Blobs     []struct{ Digest digest.Digest } `json:"blobs"`
	Manifests []struct{ Digest digest.Digest } `json:"manifests"`
	FSLayers  []struct {
		BlobSum digest.Digest `json:"blobSum"`
	} `json:"fsLayers"`
}

// references lists the blobs and manifests that a manifest names. A manifest
// that does not parse names nothing: it was verified by digest when stored,
// so it is only of a kind this parser does not know.
func references(data []byte) (blobs, manifests []digest.Digest) {
	var m manifestRefs
	if json.Unmarshal(data, &m) != nil {
		return nil, nil
	}
	if m.Config != nil && m.Config.Digest != "" {
		blobs = append(blobs, m.Config.Digest)
	}
	for _, l := range append(m.Layers, m.Blobs...) {
		blobs = append(blobs, l.Digest)
	}
	for _, l := range m.FSLayers {
		blobs = append(blobs, l.BlobSum)
	}
	for _, c := range m.Manifests {
		manifests = append(manifests, c.Digest)
	}
	return blobs, manifests
}

// Tags returns the cached tags of the cached repository repo
// ("<host>/<path>") in lexical order: what the upstream listed when the tags
// were last pulled, for answering a tag listing while the upstream is down.
func (s *Store) Tags(ctx context.Context, repo string) ([]string, error) {
	if err := checkName("repository", repo); err != nil {
		return nil, fmt.Errorf("list cached tags: %w", err)
	}
	prefix := string(tagKey(repo, ""))
	var tags []string
	err := s.db.View(ctx, func(txn index.Reader) error {
		return txn.ScanKeys(ctx, []byte(prefix), func(kv index.Row) error {
			tags = append(tags, string(kv.Key[len(prefix):]))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list cached tags of %s: %w", repo, err)
	}
	return tags, nil
}

// HostedName returns the hosted repository's name when repo, as Inventory
// reports repositories, is a hosted repository and not a cached one.
func HostedName(repo string) (name string, ok bool) {
	return strings.CutPrefix(repo, hostedPrefix)
}
