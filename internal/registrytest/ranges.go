package registrytest

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SetIgnoreRange makes blob GETs, on both listeners, ignore the Range
// header and answer 200 with the whole blob, as some registries and CDNs do.
func (r *Registry) SetIgnoreRange(ignore bool) { r.ignoreRange.Store(ignore) }

// blobRange prepares a blob GET's Range header for the handler behind:
// it is dropped while ranges are ignored, and an open-ended "bytes=N-"
// (what a client resuming a download sends) is closed at the blob's last
// byte, the only form go-containerregistry's handler understands.
func (r *Registry) blobRange(req *http.Request, info RequestInfo) {
	rng := req.Header.Get("Range")
	if rng == "" || req.Method != http.MethodGet || info.Kind != KindBlob {
		return
	}
	if r.ignoreRange.Load() {
		req.Header.Del("Range")
		return
	}
	from, open := strings.CutSuffix(strings.TrimPrefix(rng, "bytes="), "-")
	if !open || strings.Contains(from, "-") {
		return
	}
	h, err := v1.NewHash(info.Reference)
	if err != nil {
		return
	}
	if data, ok := r.blobs.getIn(info.Repo, h); ok && len(data) > 0 {
		req.Header.Set("Range", "bytes="+from+"-"+strconv.Itoa(len(data)-1))
	}
}

// RandomFaults makes a share of all blob GETs fail, on both listeners:
// each fails with probability Rate, half of those with a 500 before any
// byte, half cut off (the connection closed) at a random point of the
// body. Seed makes the draws repeatable.
type RandomFaults struct {
	Rate float64
	Seed uint64
}

// randomFaults draws the fate of each blob GET.
type randomFaults struct {
	mu     sync.Mutex
	rate   float64
	rng    *rand.Rand
	errors int
	cuts   int
}

// SetRandomBlobFaults starts failing blob GETs at random as f says; a
// zero Rate stops it.
func (r *Registry) SetRandomBlobFaults(f RandomFaults) {
	r.random.mu.Lock()
	defer r.random.mu.Unlock()
	r.random.rate = f.Rate
	r.random.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
}

// RandomFaultsStruck reports how many blob GETs the random faults failed
// so far: with a 500, and cut off mid-body.
func (r *Registry) RandomFaultsStruck() (errors, cuts int) {
	r.random.mu.Lock()
	defer r.random.mu.Unlock()
	return r.random.errors, r.random.cuts
}

// draw decides one blob GET's fate: fail with a 500, or cut the body at
// the fraction cut of its length (0: no cut).
func (f *randomFaults) draw() (fail bool, cut float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rate <= 0 || f.rng.Float64() >= f.rate {
		return false, 0
	}
	if f.rng.IntN(2) == 0 {
		f.errors++
		return true, 0
	}
	f.cuts++
	return false, 0.05 + 0.9*f.rng.Float64()
}
