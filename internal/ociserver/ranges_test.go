package ociserver

import (
	"testing"
)

func TestParseRange(t *testing.T) {
	t.Parallel()
	const size = 2000
	tests := []struct {
		header  string
		want    byteRange
		ranged  bool
		invalid bool
	}{
		{header: "", ranged: false},
		{header: "bytes=500-1499", ranged: true, want: byteRange{500, 1499}},
		{header: "bytes=500-", ranged: true, want: byteRange{500, 1999}},
		{header: "bytes=-500", ranged: true, want: byteRange{1500, 1999}},
		{header: "bytes=-5000", ranged: true, want: byteRange{0, 1999}},
		{header: "bytes=0-0", ranged: true, want: byteRange{0, 0}},
		{header: "bytes=1500-9999", ranged: true, want: byteRange{1500, 1999}},
		{header: "items=0-5", ranged: false},
		{header: "bytes=2000-", invalid: true},
		{header: "bytes=1499-500", invalid: true},
		{header: "bytes=0-1,5-9", invalid: true},
		{header: "bytes=-0", invalid: true},
		{header: "bytes=abc", invalid: true},
		{header: "bytes=+1-2", invalid: true},
		{header: "bytes=99999999999999999999-", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			t.Parallel()
			spec, ranged, err := parseRange(tt.header)
			if err == nil && ranged {
				var got byteRange
				got, err = spec.resolve(size)
				if err == nil && got != tt.want {
					t.Fatalf("range %q resolved to %+v, want %+v", tt.header, got, tt.want)
				}
			}
			if tt.invalid {
				if err != errRange {
					t.Fatalf("range %q: error %v, want errRange", tt.header, err)
				}
				return
			}
			if err != nil || ranged != tt.ranged {
				t.Fatalf("range %q: ranged=%v err=%v, want ranged=%v", tt.header, ranged, err, tt.ranged)
			}
		})
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=-5", "bytes=7-", "bytes=1-0", "bytes=0-1,2-3"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		spec, ranged, err := parseRange(header)
		if err != nil || !ranged {
			return
		}
		if spec.startHint() < 0 {
			t.Fatalf("negative start hint for %q", header)
		}
		r, err := spec.resolve(size)
		if err != nil {
			return
		}
		if r.start < 0 || r.end >= size || r.start > r.end {
			t.Fatalf("range %q on size %d resolved out of bounds: %+v", header, size, r)
		}
	})
}
