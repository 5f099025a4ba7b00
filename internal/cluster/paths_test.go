package cluster

import (
	"strings"
	"testing"
)

const (
	sha256Hex = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
	sha512Hex = "sha512:" + "ab" + "cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
)

var readPaths = map[string]bool{
	"/v2/library/node/blobs/" + sha256Hex:           true,
	"/v2/node/blobs/" + sha512Hex:                   true,
	"/v2/docker.io/library/node/blobs/" + sha256Hex: true,
	"/v2/team/blobs/app/blobs/" + sha256Hex:         true,
	"/v2/library/node/manifests/22-alpine":          true,
	"/v2/library/node/manifests/" + sha256Hex:       true,
	// An upload session to the protocol server, not a blob.
	"/v2/library/node/blobs/uploads/" + sha256Hex:          false,
	"/v2/library/node/blobs/uploads/abc":                   false,
	"/v2/library/node/blobs/uploads/":                      false,
	"/v2/library/node/blobs/md5:d41d8cd98f00b204e9800998":  false,
	"/v2/library/node/blobs/sha256:abc":                    false,
	"/v2/library/node/blobs/" + strings.ToUpper(sha256Hex): false,
	"/v2/library/node/manifests/.hidden":                   false,
	"/v2/library/node/manifests/":                          false,
	"/v2/library/node/tags/list":                           false,
	"/v2/library/node/referrers/" + sha256Hex:              false,
	"/v2/_catalog":                                     false,
	"/v2/":                                             false,
	"/v2/blobs/" + sha256Hex:                           false,
	"/v2/../admin/blobs/" + sha256Hex:                  false,
	"/v2/library/../node/blobs/" + sha256Hex:           false,
	"/v2/library//node/blobs/" + sha256Hex:             false,
	"/v2/library%2fnode/blobs/" + sha256Hex:            false,
	"/v2/library/node/blobs/sha256%3a" + sha256Hex[7:]: false,
	"/admin/stats":                                     false,
	"/v3/library/node/blobs/" + sha256Hex:              false,
}

func TestRegistryReadPath(t *testing.T) {
	t.Parallel()
	for p, want := range readPaths {
		if got := registryReadPath(p); got != want {
			t.Errorf("registryReadPath(%q) = %v; want %v", p, got, want)
		}
	}
}

// Whatever the path, an accepted one stays inside /v2/ and names a blob or
// manifest of a plain repository name.
func FuzzRegistryReadPath(f *testing.F) {
	for p := range readPaths {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !registryReadPath(p) {
			return
		}
		if !strings.HasPrefix(p, "/v2/") || strings.Contains(p, "..") || strings.Contains(p, "//") ||
			strings.ContainsAny(p, "%?#\\ \t\r\n") {
			t.Fatalf("accepted %q", p)
		}
		if !strings.Contains(p, "/blobs/") && !strings.Contains(p, "/manifests/") {
			t.Fatalf("accepted %q, neither a blob nor a manifest", p)
		}
	})
}
