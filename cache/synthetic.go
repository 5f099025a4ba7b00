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

	"github.com/regmirror/regmirror/cache/index"
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
	now := s.now()
	made := map[string]bool{}
	for start := 0; start < n; start += flushChunk {
		var rows [][2][]byte
		for i := start; i < min(start+flushChunk, n); i++ {
			d, err := writeSyntheticBlob(s.blobRoot, i, made)
			if err != nil {
				return err
			}
			// Spread the access times over a day, so eviction has an order to find.
			at := now.Add(-time.Duration(i*7919%86400) * time.Second)
			row := blobRow{Size: syntheticSize, Created: at, LastAccess: at}
			v := []byte{byte(kindBlob)}
			rows = append(rows, [2][]byte{blobKey(d), row.marshal()}, [2][]byte{repoRefKey(repo, d), v}, [2][]byte{usedByKey(d, repo), v})
		}
		if err := s.db.Update(ctx, func(txn index.Txn) error { return setRows(txn, rows) }); err != nil {
			return fmt.Errorf("write synthetic index rows: %w", err)
		}
	}
	return nil
}

// syntheticSize is the size of every synthetic blob: i as 8 bytes.
const syntheticSize = 8

// writeSyntheticBlob writes the file of synthetic blob i and returns its
// digest. made lists the fan-out directories made so far.
func writeSyntheticBlob(blobRoot string, i int, made map[string]bool) (digest.Digest, error) {
	var content [syntheticSize]byte
	binary.LittleEndian.PutUint64(content[:], uint64(i))
	d := digest.FromBytes(content[:])
	path := blobPath(blobRoot, d)
	if dir := filepath.Dir(path); !made[dir] {
		if err := makePrivateDir(dir); err != nil {
			return "", err
		}
		made[dir] = true
	}
	if err := os.WriteFile(path, content[:], fileMode); err != nil {
		return "", fmt.Errorf("write synthetic blob: %w", err)
	}
	return d, nil
}

// setRows writes key-value pairs.
func setRows(txn index.Txn, rows [][2][]byte) error {
	for _, kv := range rows {
		if err := txn.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}
