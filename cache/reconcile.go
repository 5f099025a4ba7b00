package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// reconciliation counts what reconcile repaired.
type reconciliation struct {
	droppedRows  int // index rows whose file was missing or had the wrong size
	adoptedFiles int // verified files that had no row (a crash between rename and commit)
	removedFiles int // files that had no row and did not hash to their name, or are no blob's
}

// Reconcile makes the index and the blob tree agree after a crash or a
// manual deletion: rows without a sound file are dropped, files without a
// row are re-hashed and indexed when they hash to their name, removed
// otherwise. Run calls it once in the background, so that a daemon serves
// at once however large its cache: until the sweep reaches them, a row
// whose file is gone or has the wrong size is dropped when it is read (see
// openFile), and a file without a row is not served at all. The sweep is
// safe beside reads, downloads and removals: it re-checks each row and
// file in the transaction that changes it, and holds a file it adopts or
// removes against removal meanwhile.
func (s *Store) Reconcile(ctx context.Context) error {
	start := time.Now()
	var rec reconciliation
	var err error
	if rec.droppedRows, err = s.dropRowsWithoutFiles(ctx); err != nil {
		return fmt.Errorf("reconcile index with files: %w", err)
	}
	if rec.adoptedFiles, rec.removedFiles, err = s.adoptOrphanFiles(ctx); err != nil {
		return fmt.Errorf("reconcile files with index: %w", err)
	}
	if rec != (reconciliation{}) {
		s.log.Warn("cache reconciled with its files", "dropped_rows", rec.droppedRows,
			"adopted_files", rec.adoptedFiles, "removed_files", rec.removedFiles)
	}
	s.log.Info("cache reconcile finished", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// unsound is a blob row whose file was missing or had the wrong size when
// the sweep looked.
type unsound struct {
	d   digest.Digest
	row blobRow
	bad bool // the row itself did not decode
}

func (s *Store) dropRowsWithoutFiles(ctx context.Context) (int, error) {
	var found []unsound
	err := s.db.View(ctx, func(txn index.Reader) error {
		return txn.Scan(ctx, []byte(prefixBlob), func(kv index.Row) error {
			d := digest.Digest(kv.Key[len(prefixBlob):])
			row, err := unmarshalBlobRow(kv.Value)
			if err != nil || checkDigest(d) != nil {
				found = append(found, unsound{d: d, bad: true}) // unreadable: as good as missing
				return nil
			}
			if !s.fileSound(ctx, d, row) {
				found = append(found, unsound{d: d, row: row})
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	dropped := 0
	for len(found) > 0 {
		chunk := found[:min(removeChunk, len(found))]
		found = found[len(chunk):]
		n, err := s.dropUnsound(ctx, chunk)
		if err != nil {
			return dropped, err
		}
		dropped += n
	}
	return dropped, nil
}

// fileSound reports whether the file of the blob d has the size of its row.
func (s *Store) fileSound(ctx context.Context, d digest.Digest, row blobRow) bool {
	info, err := s.blobs.Stat(ctx, d)
	return err == nil && info.Size == row.Size
}

// dropUnsound drops the rows of chunk that are still the ones the sweep saw
// and still lack a sound file: meanwhile a read may have dropped one, and a
// download may have put the blob back. A file of the wrong size stays for
// adoptOrphanFiles, which removes it once it has no row.
func (s *Store) dropUnsound(ctx context.Context, chunk []unsound) (int, error) {
	var gone []unsound
	err := s.db.Update(ctx, func(txn index.Txn) error {
		gone = gone[:0]
		ds := make([]digest.Digest, len(chunk))
		for i, u := range chunk {
			ds[i] = u.d
		}
		users, err := usersOf(ctx, txn, ds)
		if err != nil {
			return err
		}
		for _, u := range chunk {
			v, err := getValue(txn, blobKey(u.d))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if !u.bad {
				cur, err := unmarshalBlobRow(v)
				if err != nil || !cur.Created.Equal(u.row.Created) || s.fileSound(ctx, u.d, cur) {
					continue
				}
			}
			if err := txn.Delete(blobKey(u.d)); err != nil {
				return err
			}
			if err := deleteReferences(txn, u.d, users[u.d]); err != nil {
				return err
			}
			gone = append(gone, u)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, u := range gone {
		s.log.Warn("dropping cache index row without a sound file", "digest", u.d)
		s.forget(u.row.Size)
	}
	return len(gone), nil
}

// adoptOrphanFiles walks the blob store for files the index does not
// know. The walk removes files that cannot be blobs itself (see
// fileBlobs.Walk); they count as removed.
func (s *Store) adoptOrphanFiles(ctx context.Context) (adopted, removed int, err error) {
	straysBefore := s.strayFiles.Load()
	defer func() { removed += int(s.strayFiles.Load() - straysBefore) }()
	err = s.blobs.Walk(ctx, func(d digest.Digest) error {
		if checkDigest(d) != nil {
			return nil // not the cache's: the store lists only what it was given
		}
		switch outcome, err := s.settleOrphan(ctx, d, blobPath(s.blobRoot, d)); {
		case err != nil:
			return err
		case outcome == orphanAdopted:
			adopted++
		case outcome == orphanRemoved:
			removed++
		}
		return nil
	})
	return adopted, removed, err
}

// What settleOrphan did with a file.
type orphanOutcome int

const (
	orphanKept    orphanOutcome = iota // it has a row, or is being removed
	orphanAdopted                      // it hashed to its name and was indexed
	orphanRemoved                      // it did not, and was removed
)

// settleOrphan adopts the file at path as the blob d if it has no row and
// hashes to d, and removes it if it has no row and does not. It holds d as a
// reader while it hashes, so that no removal of d runs beside it, and lets
// go before removing the file, which claims d for removal instead.
func (s *Store) settleOrphan(ctx context.Context, d digest.Digest, path string) (orphanOutcome, error) {
	adopted, err := s.adoptIfSound(ctx, d, path)
	switch {
	case err != nil:
		return orphanKept, err
	case adopted != orphanRemoved:
		return adopted, nil
	}
	return s.removeOrphan(ctx, d, path)
}

// adoptIfSound adopts the file at path as the blob d if d has no row and
// the file hashes to d. It answers orphanRemoved for a file to remove.
func (s *Store) adoptIfSound(ctx context.Context, d digest.Digest, path string) (orphanOutcome, error) {
	if _, ok := s.uses.acquire(d); !ok {
		return orphanKept, nil // being removed: the removal takes the file
	}
	defer s.uses.release(d)
	switch indexed, err := s.hasBlob(ctx, d); {
	case err != nil:
		return orphanKept, err
	case indexed:
		return orphanKept, nil
	}
	switch ok, err := s.adopt(ctx, d, path); {
	case err != nil:
		return orphanKept, err
	case ok:
		return orphanAdopted, nil
	}
	return orphanRemoved, nil
}

// removeOrphan removes the unindexed file of d, unless d is in use: a
// download of d in flight (it may be renaming its sound file over this one
// before it indexes it), an upload publishing d (it holds d in the use
// table across its rename and commit), or d indexed meanwhile. The claim
// in the use table makes a publisher that comes later wait until the file
// is gone, rather than rename its file in first and lose it to the removal.
// A download leaves Store.downloads only once indexed, and none starts
// while the lock of Store.downloads is held.
func (s *Store) removeOrphan(ctx context.Context, d digest.Digest, path string) (orphanOutcome, error) {
	s.downloads.Lock()
	defer s.downloads.Unlock()
	claimed, _ := s.uses.claim([]digest.Digest{d}, func(d digest.Digest) bool { return len(s.downloadingLocked(d)) > 0 })
	if len(claimed) == 0 {
		return orphanKept, nil
	}
	defer s.uses.unclaim(claimed)
	if indexed, err := s.hasBlob(ctx, d); err != nil || indexed {
		return orphanKept, err
	}
	s.log.Warn("removing unindexed file from the blob tree", "path", path)
	if err := s.blobs.Remove(ctx, d); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return orphanKept, err
	}
	return orphanRemoved, nil
}

// adopt indexes the file at path, the blob d, if its content hashes to d
// and d has no row yet. Its mtime, the time of the download, stands in for
// creation and access.
func (s *Store) adopt(ctx context.Context, d digest.Digest, path string) (bool, error) {
	f, err := s.blobs.Open(ctx, d)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
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
	var added bool
	defer s.indexingBlobRow()()
	err = s.db.Update(ctx, func(txn index.Txn) error {
		_, err := getValue(txn, blobKey(d))
		if added = errors.Is(err, fs.ErrNotExist); !added {
			return err // a download indexed it meanwhile
		}
		return txn.Set(blobKey(d), row.marshal())
	})
	if err != nil {
		return false, err
	}
	s.verified.add(d)
	if added {
		s.metrics.blobs.Inc()
		s.metrics.sizeBytes.Add(float64(size))
		s.usage.Add(size)
		s.signalGrowth()
		s.log.Warn("indexed a verified blob file the index had lost", "digest", d)
	}
	return added, nil
}
