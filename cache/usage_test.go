package cache

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Manifests and tags count against the budget; removing them gives back
// exactly what they counted, also after a reopen.
func TestUsageCountsManifestsAndTags(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, Options{Dir: dir})
	drain := func() {
		select {
		case <-s.Grew():
		default:
		}
	}
	small := []byte(`{"schemaVersion":2}`)
	var digests []digest.Digest
	for _, data := range [][]byte{small, bigManifest} {
		drain()
		before := s.Usage()
		d, err := s.PutManifest(ctx, testRepo, "application/vnd.oci.image.manifest.v1+json", data)
		if err != nil {
			t.Fatal(err)
		}
		if grew := s.Usage() - before; grew < int64(len(data)) {
			t.Errorf("a %d-byte manifest grew the usage by %d", len(data), grew)
		}
		select {
		case <-s.Grew():
		default:
			t.Error("a new manifest did not signal growth")
		}
		before = s.Usage()
		for _, tag := range []string{"a", "a", "b"} { // moving a tag adds no row
			if err := s.PutTag(ctx, testRepo, tag+string(d.Encoded()[:4]), d, s.now()); err != nil {
				t.Fatal(err)
			}
		}
		if grew := s.Usage() - before; grew != 2*tagCost {
			t.Errorf("two tags grew the usage by %d, want %d", grew, 2*tagCost)
		}
		digests = append(digests, d)
	}
	if _, err := s.PutManifest(ctx, "docker.io/library/other", "application/vnd.oci.image.manifest.v1+json", small); err != nil {
		t.Fatal(err)
	}
	usage := s.Usage()
	inv, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, m := range inv.Manifests {
		sum += m.Cost
	}
	if sum != usage {
		t.Errorf("the inventory's costs sum to %d, the usage is %d", sum, usage)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Options{Dir: dir})
	if s.Usage() != usage {
		t.Fatalf("usage after reopen = %d, want %d", s.Usage(), usage)
	}
	r, err := s.RemoveManifests(ctx, digests, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Usage() != 0 || r.Freed != usage {
		t.Fatalf("after removing every manifest: usage %d, freed %d of %d", s.Usage(), r.Freed, usage)
	}
}
