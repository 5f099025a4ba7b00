package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// WriteSynthetic adds n distinct blobs of eight bytes each to the cache in
// dir (which no daemon may be using), all used by repository repo: files
// and index rows written directly, in large batches and without the fsyncs
// of real downloads, so that a cache of a million blobs takes minutes to
// make rather than hours. It is for measuring what a large cache costs
// (scripts/bench); the blobs are real content that hashes to its digest.
func WriteSynthetic(ctx context.Context, dir, repo string, n int) error {
	if err := checkName("repository", repo); err != nil {
		return fmt.Errorf("write synthetic cache: %w", err)
	}
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		return err
	}
	err = s.writeSynthetic(ctx, repo, n)
	return errors.Join(err, s.Close())
}

func (s *Store) writeSynthetic(ctx context.Context, repo string, n int) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	now := s.now()
	made := map[string]bool{}
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		var content [8]byte
		binary.LittleEndian.PutUint64(content[:], uint64(i))
		d := digest.FromBytes(content[:])
		path := blobPath(s.blobRoot, d)
		if dir := filepath.Dir(path); !made[dir] {
			if err := makePrivateDir(dir); err != nil {
				return err
			}
			made[dir] = true
		}
		if err := os.WriteFile(path, content[:], fileMode); err != nil {
			return fmt.Errorf("write synthetic blob: %w", err)
		}
		// Spread the access times over a day, so eviction has an order to find.
		at := now.Add(-time.Duration(i*7919%86400) * time.Second)
		row := blobRow{Size: int64(len(content)), Created: at, LastAccess: at}
		v := []byte{byte(kindBlob)}
		for _, kv := range [][2][]byte{{blobKey(d), row.marshal()}, {repoRefKey(repo, d), v}, {usedByKey(d, repo), v}} {
			if err := wb.Set(kv[0], kv[1]); err != nil {
				return fmt.Errorf("write synthetic index rows: %w", err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write synthetic index rows: %w", err)
	}
	return nil
}
