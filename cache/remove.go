package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// removeChunk bounds the digests claimed and deleted per transaction.
const removeChunk = 256

// Removal reports what RemoveBlobs or RemoveManifests did.
type Removal struct {
	// Removed is what left the cache; Freed is what it counted against the
	// budget: the bytes of removed blobs, or those that removed manifests
	// and their tags counted (see Store.Usage).
	Removed []digest.Digest
	Freed   int64
	// InUse were skipped: a reader or a download holds them right now.
	InUse []digest.Digest
	// Kept were skipped: Keep marked them.
	Kept []digest.Digest
	// Tags counts the tags removed with their manifests.
	Tags int
}

func (r *Removal) add(o Removal) {
	r.Removed = append(r.Removed, o.Removed...)
	r.Freed += o.Freed
	r.InUse = append(r.InUse, o.InUse...)
	r.Kept = append(r.Kept, o.Kept...)
	r.Tags += o.Tags
}

// RemoveBlobs deletes blobs from the index and the disk, with the records of
// which repositories used them. It skips, and reports, blobs that are being
// read or downloaded and blobs marked by Keep; digests not cached are
// ignored. progress, when not nil, is called after each chunk with the
// digests handled so far. On error, the Removal tells what was done.
func (s *Store) RemoveBlobs(ctx context.Context, ds []digest.Digest, progress func(done int)) (Removal, error) {
	var total Removal
	for done := 0; done < len(ds); {
		chunk := ds[done:min(done+removeChunk, len(ds))]
		r, err := s.removeBlobChunk(ctx, chunk)
		total.add(r)
		if err != nil {
			return total, fmt.Errorf("remove blobs: %w", err)
		}
		done += len(chunk)
		if progress != nil {
			progress(done)
		}
	}
	return total, nil
}

func (s *Store) removeBlobChunk(ctx context.Context, ds []digest.Digest) (Removal, error) {
	for _, d := range ds {
		if err := checkDigest(d); err != nil {
			return Removal{}, err
		}
	}
	claimed, inUse := s.claim(ds)
	defer s.uses.unclaim(claimed)

	var r Removal
	var sizes map[digest.Digest]int64
	err := s.db.Update(ctx, func(txn index.Txn) error {
		r, sizes = Removal{InUse: inUse}, make(map[digest.Digest]int64)
		users, err := usersOf(ctx, txn, claimed)
		if err != nil {
			return err
		}
		for _, d := range claimed {
			size, kept, err := deleteBlob(txn, d, users[d])
			switch {
			case err != nil:
				return err
			case kept:
				r.Kept = append(r.Kept, d)
			case size >= 0:
				sizes[d] = size
			}
		}
		return nil
	})
	if err != nil {
		return Removal{InUse: inUse}, err
	}
	// The rows are gone: from here on a failure leaves an orphan file, which
	// the next Open reconciles, never a row without its file.
	crashPoint(stepRowsDeleted)
	for _, d := range claimed {
		size, ok := sizes[d]
		if !ok {
			continue
		}
		if err := s.blobs.Remove(ctx, d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove blob file", "digest", d, "err", err)
		}
		s.forget(size)
		s.verified.forget(d)
		r.Removed = append(r.Removed, d)
		r.Freed += size
	}
	return r, nil
}

// claim marks the digests that no reader or download holds as being removed.
func (s *Store) claim(ds []digest.Digest) (claimed, inUse []digest.Digest) {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	return s.uses.claim(ds, func(d digest.Digest) bool { return len(s.downloadingLocked(d)) > 0 })
}

// deleteBlob deletes the row of d and its references from repos unless d is
// kept. size is -1 when d is not indexed.
func deleteBlob(txn index.Txn, d digest.Digest, repos []string) (size int64, kept bool, err error) {
	if kept, err := isKept(txn, d); err != nil || kept {
		return -1, kept, err
	}
	v, err := getValue(txn, blobKey(d))
	if errors.Is(err, fs.ErrNotExist) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, err
	}
	row, err := unmarshalBlobRow(v)
	if err != nil {
		return -1, false, err
	}
	if err := txn.Delete(blobKey(d)); err != nil {
		return -1, false, err
	}
	return row.Size, false, deleteReferences(txn, d, repos)
}

// usersOf lists the repositories that use each of ds, in one scan.
func usersOf(ctx context.Context, txn index.Reader, ds []digest.Digest) (map[digest.Digest][]string, error) {
	prefixes := make([][]byte, len(ds))
	for i, d := range ds {
		prefixes[i] = usedByKey(d, "")
	}
	users := make(map[digest.Digest][]string, len(ds))
	err := txn.ScanKeysEach(ctx, prefixes, func(i int, kv index.Row) error {
		users[ds[i]] = append(users[ds[i]], string(kv.Key[len(prefixes[i]):]))
		return nil
	})
	return users, err
}

// deleteReferences deletes both directions of the references to d from repos.
func deleteReferences(txn index.Txn, d digest.Digest, repos []string) error {
	for _, repo := range repos {
		if err := txn.Delete(usedByKey(d, repo)); err != nil {
			return err
		}
		if err := txn.Delete(repoRefKey(repo, d)); err != nil {
			return err
		}
	}
	return nil
}

// RemoveManifests deletes manifests from the index, with the tags that point
// to them and the records of which repositories used them, and takes what
// they counted out of the usage. It skips, and
// reports, manifests marked by Keep. The blobs they name stay: removing
// those is the caller's decision. progress is as for RemoveBlobs.
func (s *Store) RemoveManifests(ctx context.Context, ds []digest.Digest, progress func(done int)) (Removal, error) {
	for _, d := range ds {
		if err := checkDigest(d); err != nil {
			return Removal{}, fmt.Errorf("remove manifests: %w", err)
		}
	}
	tagsOf, err := s.tagsByDigest(ctx)
	if err != nil {
		return Removal{}, fmt.Errorf("remove manifests: %w", err)
	}
	var total Removal
	for done := 0; done < len(ds); {
		chunk := ds[done:min(done+removeChunk, len(ds))]
		var r Removal
		err := s.db.Update(ctx, func(txn index.Txn) error {
			r = Removal{}
			for _, d := range chunk {
				if err := deleteManifest(ctx, txn, d, tagsOf[d], &r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("remove manifests: %w", err)
		}
		s.growIndex(-r.Freed)
		total.add(r)
		done += len(chunk)
		if progress != nil {
			progress(done)
		}
	}
	return total, nil
}

// deleteManifest deletes d, its access time, references and tags, unless d is
// kept, and records the outcome in r.
func deleteManifest(ctx context.Context, txn index.Txn, d digest.Digest, tags [][]byte, r *Removal) error {
	if kept, err := isKept(txn, d); err != nil || kept {
		if kept {
			r.Kept = append(r.Kept, d)
		}
		return err
	}
	key := manifestKey(d)
	size, err := txn.ValueSize(key)
	if errors.Is(err, index.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	cost := manifestCost(key, size)
	for _, k := range [][]byte{key, manifestAccessKey(d)} {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	n, err := deleteTagsTo(txn, d, tags)
	if err != nil {
		return err
	}
	r.Tags += n
	r.Freed += cost + int64(n)*tagCost
	r.Removed = append(r.Removed, d)
	users, err := usersOf(ctx, txn, []digest.Digest{d})
	if err != nil {
		return err
	}
	return deleteReferences(txn, d, users[d])
}

// deleteTagsTo deletes the tags among keys that still point to d: one may
// have moved since the keys were listed.
func deleteTagsTo(txn index.Txn, d digest.Digest, keys [][]byte) (int, error) {
	var n int
	for _, key := range keys {
		v, err := getValue(txn, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, err
		}
		if row, err := unmarshalTagRow(v); err != nil || row.Digest != d {
			continue
		}
		if err := txn.Delete(key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// tagsByDigest maps each manifest digest to the keys of the tags naming it.
func (s *Store) tagsByDigest(ctx context.Context) (map[digest.Digest][][]byte, error) {
	tags := make(map[digest.Digest][][]byte)
	err := s.db.View(ctx, func(txn index.Reader) error {
		return txn.Scan(ctx, []byte(prefixTag), func(kv index.Row) error {
			row, err := unmarshalTagRow(kv.Value)
			if err == nil {
				tags[row.Digest] = append(tags[row.Digest], bytes.Clone(kv.Key))
			}
			return nil
		})
	})
	return tags, err
}
