package eviction

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestSelect(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	blob := func(name string, size int64, minutes int, keep bool) Candidate {
		return Candidate{Digest: digest.FromString(name), Size: size, LastAccess: base.Add(time.Duration(minutes) * time.Minute), Keep: keep}
	}
	old, mid, recent := blob("old", 40, 0, false), blob("mid", 30, 10, false), blob("recent", 30, 20, false)
	pinnedOld := blob("pinned", 40, 0, true)
	bigTie, smallTie := blob("big", 50, 5, false), blob("small", 10, 5, false)
	tests := []struct {
		name          string
		candidates    []Candidate
		usage, target int64
		want          []Candidate
	}{
		{name: "within budget", candidates: []Candidate{old, mid, recent}, usage: 100, target: 100, want: nil},
		{name: "oldest first", candidates: []Candidate{recent, old, mid}, usage: 100, target: 80, want: []Candidate{old}},
		{name: "until under target", candidates: []Candidate{recent, old, mid}, usage: 100, target: 40, want: []Candidate{old, mid}},
		{name: "kept blobs stay", candidates: []Candidate{pinnedOld, mid, recent}, usage: 100, target: 70, want: []Candidate{mid}},
		{name: "unreachable target takes all it may", candidates: []Candidate{pinnedOld, mid}, usage: 70, target: 0, want: []Candidate{mid}},
		{name: "tie goes to the larger blob", candidates: []Candidate{smallTie, bigTie}, usage: 60, target: 20, want: []Candidate{bigTie}},
		{name: "no candidates", candidates: nil, usage: 10, target: 0, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Select(tt.candidates, tt.usage, tt.target)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Select() = %v, want %v", names(got), names(tt.want))
			}
		})
	}
}

func names(cs []Candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Digest.Encoded()[:8])
	}
	return out
}

func BenchmarkSelect100k(b *testing.B) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cands := make([]Candidate, 100_000)
	var usage int64
	for i := range cands {
		cands[i] = Candidate{Digest: digest.FromBytes([]byte{byte(i), byte(i >> 8), byte(i >> 16)}), Size: int64(1 + i%4096), LastAccess: base.Add(time.Duration(i*7919%100_000) * time.Second)}
		usage += cands[i].Size
	}
	b.ReportAllocs()
	for b.Loop() {
		Select(cands, usage, usage*8/10)
	}
}

func TestCandidatesOfManifests(t *testing.T) {
	t.Parallel()
	d := func(name string) digest.Digest { return digest.FromString(name) }
	manifests := []Manifest{
		{Digest: d("plain"), Size: 10, Repos: []string{"docker.io/library/node"}},
		{Digest: d("index"), Size: 20, Repos: []string{"docker.io/library/node"}, Manifests: []digest.Digest{d("child")}},
		{Digest: d("child"), Size: 30, Repos: []string{"docker.io/library/node"}},
		{Digest: d("hosted"), Size: 40, Kept: true, Repos: []string{"hosted/team/app"}},
		{Digest: d("pinned index"), Size: 50, Repos: []string{"docker.io/library/alpine"}, Manifests: []digest.Digest{d("pinned child")}},
		{Digest: d("pinned child"), Size: 60, Repos: []string{"docker.io/library/alpine"}},
	}
	tests := []struct {
		name     string
		pins     Pins
		wantKeep map[digest.Digest]bool
	}{
		{
			name:     "no pins: kept ones and children of a cached index stay",
			wantKeep: map[digest.Digest]bool{d("child"): true, d("hosted"): true, d("pinned child"): true},
		},
		{
			name: "pinned repository stays with its children",
			pins: Pins{{Repo: "library/alpine"}},
			wantKeep: map[digest.Digest]bool{d("child"): true, d("hosted"): true,
				d("pinned index"): true, d("pinned child"): true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Candidates(Inventory{Manifests: manifests}, tt.pins)
			if len(got) != len(manifests) {
				t.Fatalf("%d candidates for %d manifests", len(got), len(manifests))
			}
			for i, c := range got {
				if !c.Manifest || c.Size != manifests[i].Size || c.Digest != manifests[i].Digest {
					t.Errorf("candidate %d = %+v, want manifest %s of size %d", i, c, manifests[i].Digest, manifests[i].Size)
				}
				if c.Keep != tt.wantKeep[c.Digest] {
					t.Errorf("%s: Keep = %v, want %v", c.Digest, c.Keep, tt.wantKeep[c.Digest])
				}
			}
		})
	}
}
