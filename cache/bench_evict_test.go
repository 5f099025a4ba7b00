package cache

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// BenchmarkEvict100k measures what an eviction pass costs the cache with
// 100,000 blobs indexed: list them with their access times, order them, and
// remove every one (index rows, reference rows and files). The selection
// itself is eviction.BenchmarkSelect100k. Run it with -benchtime=1x: each
// round rebuilds the 100,000 entries first, untimed.
func BenchmarkEvict100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		s := openStore(b, Options{})
		populate(b, s, n)
		b.StartTimer()

		blobs, err := s.Blobs(ctx)
		if err != nil {
			b.Fatal(err)
		}
		slices.SortFunc(blobs, func(x, y BlobInfo) int { return x.LastAccess.Compare(y.LastAccess) })
		ds := make([]digest.Digest, len(blobs))
		for i, blob := range blobs {
			ds[i] = blob.Digest
		}
		r, err := s.RemoveBlobs(ctx, ds, nil)
		if err != nil || len(r.Removed) != n {
			b.Fatalf("removed %d of %d: %v", len(r.Removed), n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/entry")
}

// populate indexes n one-byte blobs, with a file and a repository reference
// each, without the fsyncs of real downloads.
func populate(b *testing.B, s *Store, n int) {
	b.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ds := make([]digest.Digest, n)
	for i := range ds {
		var content [8]byte
		binary.LittleEndian.PutUint64(content[:], uint64(i))
		ds[i] = digest.FromBytes(content[:])
		path := blobPath(s.blobRoot, ds[i])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, content[:], 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for start := 0; start < n; start += flushChunk {
		chunk := ds[start:min(start+flushChunk, n)]
		err := s.db.Update(context.Background(), func(txn index.Txn) error {
			for j, d := range chunk {
				at := base.Add(time.Duration((start+j)*7919%n) * time.Second) // shuffled access order
				row := blobRow{Size: 8, Created: base, LastAccess: at}
				if err := txn.Set(blobKey(d), row.marshal()); err != nil {
					return err
				}
				if err := setReference(txn, testRepo, d, kindBlob); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	s.usage.Add(int64(8 * n))
}

// BenchmarkReadBlobAccessTracking measures what access tracking (the
// batched last-access time and repository reference) adds to a cache hit:
// compare the on and off runs. The blob is small so that the hit path, not
// the copy, dominates.
func BenchmarkReadBlobAccessTracking(b *testing.B) {
	for _, tracking := range []bool{true, false} {
		name := "off"
		if tracking {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			s := openStore(b, Options{})
			data, d := randomBlob(b, 4<<10)
			fetchAll(b, s, d, bytesFetch(data, int64(len(data)), nil))
			s.skipAccess = !tracking
			ctx := context.Background()
			buf := make([]byte, len(data))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rc, _, err := s.ReadBlob(ctx, d, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(rc, buf); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
