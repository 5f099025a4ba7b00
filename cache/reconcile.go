package cache

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// reconciliation counts what reconcile repaired.
type reconciliation struct {
	droppedRows  int // index rows whose file was missing or had the wrong size
	adoptedFiles int // verified files that had no row (a crash between rename and commit)
	removedFiles int // files that had no row and did not hash to their name
}

// reconcile makes the index and the blob tree agree after a crash or a
// manual deletion: rows without a sound file are dropped, files without a row
// are re-hashed and indexed when they hash to their name, removed otherwise.
// It runs in Open, before anything reads the cache.
func (s *Store) reconcile(ctx context.Context) (reconciliation, error) {
	var rec reconciliation
	var err error
	if rec.droppedRows, err = s.dropRowsWithoutFiles(ctx); err != nil {
		return rec, fmt.Errorf("reconcile index with files: %w", err)
	}
	if rec.adoptedFiles, rec.removedFiles, err = s.adoptOrphanFiles(ctx); err != nil {
		return rec, fmt.Errorf("reconcile files with index: %w", err)
	}
	if rec != (reconciliation{}) {
		s.log.Warn("cache reconciled with its files", "dropped_rows", rec.droppedRows,
			"adopted_files", rec.adoptedFiles, "removed_files", rec.removedFiles)
	}
	return rec, nil
}

func (s *Store) dropRowsWithoutFiles(ctx context.Context) (int, error) {
	var missing []digest.Digest
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scan(ctx, txn, prefixBlob, true, func(item *badger.Item) error {
			d := digest.Digest(item.Key()[len(prefixBlob):])
			return item.Value(func(v []byte) error {
				row, err := unmarshalBlobRow(v)
				if err != nil || checkDigest(d) != nil {
					missing = append(missing, d) // unreadable: as good as missing
					return nil
				}
				if fi, err := os.Stat(blobPath(s.blobRoot, d)); err != nil || fi.Size() != row.Size {
					missing = append(missing, d)
				}
				return nil
			})
		})
	})
	if err != nil {
		return 0, err
	}
	dropped := len(missing)
	for len(missing) > 0 {
		chunk := missing[:min(removeChunk, len(missing))]
		missing = missing[len(chunk):]
		err := s.update(ctx, func(txn *badger.Txn) error {
			users := usersOf(txn, chunk)
			for _, d := range chunk {
				if err := txn.Delete(blobKey(d)); err != nil {
					return err
				}
				if err := deleteReferences(txn, d, users[d]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		for _, d := range chunk {
			s.log.Warn("dropping cache index row without a sound file", "digest", d)
			os.Remove(blobPath(s.blobRoot, d)) // a file of the wrong size
		}
	}
	return dropped, nil
}

// adoptOrphanFiles walks the blob tree of every algorithm for files the
// index does not know.
func (s *Store) adoptOrphanFiles(ctx context.Context) (adopted, removed int, err error) {
	for _, alg := range algorithms {
		a, r, err := s.adoptOrphansOf(ctx, alg)
		adopted, removed = adopted+a, removed+r
		if err != nil {
			return adopted, removed, err
		}
	}
	return adopted, removed, nil
}

// adoptOrphansOf walks the blob tree of alg: a file there is named by the
// hex of its alg digest.
func (s *Store) adoptOrphansOf(ctx context.Context, alg digest.Algorithm) (adopted, removed int, err error) {
	root := filepath.Join(s.blobRoot, string(alg))
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		d := digest.NewDigestFromEncoded(alg, e.Name())
		if checkDigest(d) == nil && blobPath(s.blobRoot, d) == path {
			switch indexed, err := s.hasBlob(ctx, d); {
			case err != nil:
				return err
			case indexed:
				return nil
			}
			if ok, err := s.adopt(ctx, d, path); ok || err != nil {
				adopted++
				return err
			}
		}
		s.log.Warn("removing unindexed file from the blob tree", "path", path)
		removed++
		return os.Remove(path)
	})
	return adopted, removed, err
}

// adopt indexes the file at path as the blob d if its content hashes to d.
// Its mtime, the time of the download, stands in for creation and access.
func (s *Store) adopt(ctx context.Context, d digest.Digest, path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	size, got, err := hashFile(ctx, f, d.Algorithm())
	if err != nil {
		return false, fmt.Errorf("hash %s: %w", path, err)
	}
	if got != d {
		return false, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	row := blobRow{Size: size, Created: fi.ModTime(), LastAccess: fi.ModTime()}
	err = s.update(ctx, func(txn *badger.Txn) error {
		return txn.Set(blobKey(d), row.marshal())
	})
	if err != nil {
		return false, err
	}
	s.verified.add(d)
	s.log.Warn("indexed a verified blob file the index had lost", "digest", d)
	return true, nil
}
