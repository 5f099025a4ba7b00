package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
)

// temporary is an upstream failure that says another request may succeed.
type temporary struct{}

func (temporary) Error() string   { return "connection reset (temporary)" }
func (temporary) Temporary() bool { return true }

// scriptedFetch answers the n-th request as answers[n] says and records
// the offsets asked for.
type scriptedFetch struct {
	mu      sync.Mutex
	offsets []int64
	answers []func(offset int64) (io.ReadCloser, int64, int64, error)
}

func (f *scriptedFetch) fetch(_ context.Context, offset int64) (io.ReadCloser, int64, int64, error) {
	f.mu.Lock()
	n := len(f.offsets)
	f.offsets = append(f.offsets, offset)
	f.mu.Unlock()
	if n >= len(f.answers) {
		return nil, 0, 0, errors.New("unexpected request")
	}
	return f.answers[n](offset)
}

func (f *scriptedFetch) asked() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.offsets)
}

// cutAfter answers with body from start, failing temporarily after n bytes.
func cutAfter(body []byte, start, size int64, n int) func(int64) (io.ReadCloser, int64, int64, error) {
	return func(int64) (io.ReadCloser, int64, int64, error) {
		r := io.MultiReader(bytes.NewReader(body[start:start+int64(n)]), iotestErrReader{temporary{}})
		return io.NopCloser(r), start, size, nil
	}
}

// from answers with body from start to its end.
func from(body []byte, start int64) func(int64) (io.ReadCloser, int64, int64, error) {
	return func(int64) (io.ReadCloser, int64, int64, error) {
		return io.NopCloser(bytes.NewReader(body[start:])), start, int64(len(body)), nil
	}
}

func TestDownloadResumes(t *testing.T) {
	t.Parallel()
	data, d := randomBlob(t, 300<<10)
	size := int64(len(data))
	other := bytes.Clone(data)
	other[10] ^= 0xff
	fails := func(int64) (io.ReadCloser, int64, int64, error) { return nil, 0, 0, temporary{} }
	tests := []struct {
		name    string
		answers []func(int64) (io.ReadCloser, int64, int64, error)
		asked   []int64
		want    error // nil: the blob is served and cached
	}{
		{name: "ranged request after a cut", asked: []int64{0, 100 << 10},
			answers: []func(int64) (io.ReadCloser, int64, int64, error){cutAfter(data, 0, size, 100<<10), from(data, 100<<10)}},
		{name: "two cuts, a 5xx between", asked: []int64{0, 1000, 1000, 150 << 10},
			answers: []func(int64) (io.ReadCloser, int64, int64, error){cutAfter(data, 0, size, 1000), fails, cutAfter(data, 1000, size, 150<<10-1000), from(data, 150<<10)}},
		{name: "5xx before the first byte", asked: []int64{0, 0},
			answers: []func(int64) (io.ReadCloser, int64, int64, error){fails, from(data, 0)}},
		{name: "range ignored: the whole blob again", asked: []int64{0, 100 << 10},
			answers: []func(int64) (io.ReadCloser, int64, int64, error){cutAfter(data, 0, size, 100<<10), from(data, 0)}},
		{name: "range ignored, other bytes sent", asked: []int64{0, 100 << 10}, want: ErrDigestMismatch,
			answers: []func(int64) (io.ReadCloser, int64, int64, error){cutAfter(data, 0, size, 100<<10), from(other, 0)}},
		{name: "another size on resume", asked: []int64{0, 100 << 10}, want: ErrSizeMismatch,
			answers: []func(int64) (io.ReadCloser, int64, int64, error){cutAfter(data, 0, size, 100<<10), func(int64) (io.ReadCloser, int64, int64, error) {
				return io.NopCloser(bytes.NewReader(data[100<<10:])), 100 << 10, size + 1, nil
			}}},
		{name: "attempts run out", asked: []int64{0, 0, 0, 0}, want: temporary{},
			answers: []func(int64) (io.ReadCloser, int64, int64, error){fails, fails, fails, fails}},
		{name: "a cut and no progress after it", asked: []int64{0, 10, 10, 10}, want: temporary{},
			answers: []func(int64) (io.ReadCloser, int64, int64, error){cutAfter(data, 0, size, 10), fails, fails, fails}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{})
			script := &scriptedFetch{answers: tt.answers}
			rc, _, _, err := s.FetchBlob(context.Background(), testRepo, d, 0, script.fetch)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			switch {
			case tt.want == nil && (err != nil || !bytes.Equal(got, data)):
				t.Fatalf("read %d bytes, err %v: want the whole blob", len(got), err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if asked := script.asked(); !slices.Equal(asked, tt.asked) {
				t.Fatalf("requests from offsets %v, want %v", asked, tt.asked)
			}
			if tt.want != nil {
				assertNotCached(t, s, d)
				return
			}
			if again := fetchAll(t, s, d, failFetch(t)); !bytes.Equal(again, data) {
				t.Fatal("the cached blob differs")
			}
		})
	}
}
