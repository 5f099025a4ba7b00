package cache

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
)

const benchBlobSize = 4 << 20

// BenchmarkReadBlob measures the hit path: index lookup, open, stat, read.
func BenchmarkReadBlob(b *testing.B) {
	s := openStore(b, Options{})
	data, d := randomBlob(b, benchBlobSize)
	fetchAll(b, s, d, bytesFetch(data, int64(len(data)), nil))
	ctx := context.Background()
	b.SetBytes(benchBlobSize)
	b.ReportAllocs()
	for b.Loop() {
		rc, _, err := s.ReadBlob(ctx, d, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkFetchBlob measures a cold miss: stream to a temp file while
// hashing, fsync, rename, index, with one reader following the download.
func BenchmarkFetchBlob(b *testing.B) {
	s := openStore(b, Options{})
	data, _ := randomBlob(b, benchBlobSize)
	ctx := context.Background()
	b.SetBytes(benchBlobSize)
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		// A different blob each round, so every round misses.
		i++
		for j := range 8 {
			data[j] = byte(i >> (8 * j))
		}
		d := digest.FromBytes(data)
		rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, whole(func(context.Context) (io.ReadCloser, int64, error) {
			return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
		}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}
