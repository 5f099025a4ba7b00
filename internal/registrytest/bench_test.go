package registrytest

import "testing"

// BenchmarkPushIndex measures generating a two-platform image of 2 × 8 × 8 MiB.
func BenchmarkPushIndex(b *testing.B) {
	r := New(b, Options{})
	opts := ImageOptions{Layers: 8, LayerSize: 8 << 20}
	b.SetBytes(2 * 8 * 8 << 20)
	for i := range b.N {
		opts.Seed = uint64(i)
		if _, err := r.PushIndex("library/bench", "latest", opts); err != nil {
			b.Fatal(err)
		}
	}
}
