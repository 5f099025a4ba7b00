package eviction

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// memCache is an in-memory Cache that, like the real one, refuses to remove
// blobs in use or kept.
type memCache struct {
	mu    sync.Mutex
	blobs map[digest.Digest]Candidate
	inUse map[digest.Digest]bool
}

func newMemCache(blobs ...Candidate) *memCache {
	c := &memCache{blobs: map[digest.Digest]Candidate{}, inUse: map[digest.Digest]bool{}}
	for _, b := range blobs {
		c.add(b)
	}
	return c
}

func (c *memCache) add(b Candidate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blobs[b.Digest] = b
}

func (c *memCache) Usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, b := range c.blobs {
		n += b.Size
	}
	return n
}

func (c *memCache) Candidates(context.Context) ([]Candidate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Candidate
	for _, b := range c.blobs {
		out = append(out, b)
	}
	return out, nil
}

func (c *memCache) Remove(_ context.Context, victims []Candidate) (int, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int
	var freed int64
	for _, v := range victims {
		d := v.Digest
		b, ok := c.blobs[d]
		if !ok || b.Keep || c.inUse[d] {
			continue
		}
		delete(c.blobs, d)
		n++
		freed += b.Size
	}
	return n, freed, nil
}

func (c *memCache) has(d digest.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.blobs[d]
	return ok
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// blobs returns n blobs of size bytes, blob i last used i minutes after epoch.
func blobs(n int, size int64) []Candidate {
	out := make([]Candidate, n)
	for i := range out {
		out[i] = Candidate{Digest: digest.FromBytes([]byte{byte(i), byte(i >> 8)}), Size: size, LastAccess: epoch.Add(time.Duration(i) * time.Minute)}
	}
	return out
}

func TestEvictKeepsUsageWithinWatermarks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		blobs       int
		keep, inUse []int // indexes of blobs that must survive
		wantGone    []int
	}{
		{name: "below the high watermark nothing goes", blobs: 9},
		{name: "above it, down to the low watermark, oldest first", blobs: 10, wantGone: []int{0, 1}},
		{name: "kept and in-use blobs are skipped", blobs: 10, keep: []int{0}, inUse: []int{1}, wantGone: []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bs := blobs(tt.blobs, 10)
			for _, i := range tt.keep {
				bs[i].Keep = true
			}
			c := newMemCache(bs...)
			for _, i := range tt.inUse {
				c.inUse[bs[i].Digest] = true
			}
			// Budget 100: high watermark 90, low 80.
			e, err := New(c, Config{MaxSize: 100}, Options{Registerer: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Evict(context.Background()); err != nil {
				t.Fatal(err)
			}
			var gone []int
			for i, b := range bs {
				if !c.has(b.Digest) {
					gone = append(gone, i)
				}
			}
			if !slices.Equal(gone, tt.wantGone) {
				t.Errorf("evicted %v, want %v", gone, tt.wantGone)
			}
			if tt.wantGone != nil && c.Usage() > 80 {
				t.Errorf("usage %d after eviction, want <= 80", c.Usage())
			}
		})
	}
}

func TestEvictRestoresFreeDisk(t *testing.T) {
	t.Parallel()
	bs := blobs(10, 10)
	c := newMemCache(bs...)
	free := int64(75)
	// No size budget: only free disk matters. 100 wanted, 75 free: the
	// shortfall of 25 plus a tenth of the minimum is 35 bytes, four blobs.
	e, err := New(c, Config{MinFreeDisk: 100}, Options{DiskFree: func() (int64, error) { return free, nil }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Evict(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Removed != 4 || p.Freed != 40 || c.has(bs[3].Digest) || !c.has(bs[4].Digest) {
		t.Errorf("pass = %+v, want the four oldest blobs gone", p)
	}
	free = 1000
	if p, _ := e.Evict(context.Background()); p.Removed != 0 {
		t.Errorf("with enough free disk the pass removed %d blobs", p.Removed)
	}
}

func TestRunEvictsWhenWokenAndOnInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newMemCache()
		e, err := New(c, Config{MaxSize: 100, Interval: time.Hour}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		wake := make(chan struct{}, 1)
		done := make(chan error)
		go func() { done <- e.Run(ctx, wake) }()

		for _, b := range blobs(10, 10) {
			c.add(b)
		}
		wake <- struct{}{}
		synctest.Wait()
		if got := c.Usage(); got != 80 {
			t.Errorf("usage %d after a wake-up, want 80", got)
		}

		for _, b := range blobs(20, 10)[10:] {
			c.add(b) // grows without a wake-up: free disk can shrink like this
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := c.Usage(); got != 80 {
			t.Errorf("usage %d after an interval, want 80", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value", Config{}, true},
		{"budget", Config{MaxSize: 1 << 30}, true},
		{"low above high", Config{HighWatermark: 0.5, LowWatermark: 0.6}, false},
		{"high above one", Config{HighWatermark: 1.5}, false},
		{"negative size", Config{MaxSize: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
	if _, err := New(newMemCache(), Config{MinFreeDisk: 1}, Options{}); err == nil {
		t.Error("New accepted a free-disk minimum without a way to measure it")
	}
}
