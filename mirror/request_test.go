package mirror

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const testDigest = digest.Digest("sha256:aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f")

var testDigest512 = digest.SHA512.FromString("test")

func TestParseRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
		want request
		code string // expected error code; empty for success
	}{
		{name: "base", path: "/v2/", want: request{kind: kindBase}},
		{name: "base without slash", path: "/v2", want: request{kind: kindBase}},
		{name: "catalog", path: "/v2/_catalog", want: request{kind: kindCatalog}},
		{name: "manifest by tag", path: "/v2/library/node/manifests/10", want: request{kind: kindManifest, name: "library/node", tag: "10"}},
		{name: "manifest by digest", path: "/v2/library/node/manifests/" + testDigest.String(), want: request{kind: kindManifest, name: "library/node", digest: testDigest}},
		{name: "blob", path: "/v2/a/b/c/blobs/" + testDigest.String(), want: request{kind: kindBlob, name: "a/b/c", digest: testDigest}},
		{name: "sha512 manifest", path: "/v2/a/manifests/" + testDigest512.String(), want: request{kind: kindManifest, name: "a", digest: testDigest512}},
		{name: "sha512 blob", path: "/v2/a/blobs/" + testDigest512.String(), want: request{kind: kindBlob, name: "a", digest: testDigest512}},
		{name: "tags", path: "/v2/node/tags/list", want: request{kind: kindTags, name: "node"}},
		{name: "upload start", path: "/v2/team/app/blobs/uploads/", want: request{kind: kindBlobUpload, name: "team/app"}},
		{name: "upload session", path: "/v2/team/app/blobs/uploads/abc", want: request{kind: kindBlobUpload, name: "team/app", uploadID: "abc"}},
		{name: "referrers", path: "/v2/team/app/referrers/" + testDigest.String(), want: request{kind: kindReferrers, name: "team/app", digest: testDigest}},
		{name: "host prefix kept in name", path: "/v2/ghcr.io/org/app/manifests/1", want: request{kind: kindManifest, name: "ghcr.io/org/app", tag: "1"}},
		{name: "ns parameter", path: "/v2/library/node/manifests/10?ns=docker.io", want: request{kind: kindManifest, name: "library/node", tag: "10", ns: "docker.io"}},

		{name: "dot dot component", path: "/v2/a/../b/manifests/1", code: codeNameInvalid},
		{name: "escaped dots", path: "/v2/a/%2e%2e/b/manifests/1", code: codeNameInvalid},
		{name: "escaped slash", path: "/v2/a%2Fb/manifests/1", code: codeNameInvalid},
		{name: "upper case", path: "/v2/Library/Node/manifests/1", code: codeNameInvalid},
		{name: "empty component", path: "/v2/a//b/manifests/1", code: codeNameInvalid},
		{name: "name too long", path: "/v2/" + strings.Repeat("a", 256) + "/manifests/1", code: codeNameInvalid},
		{name: "empty name", path: "/v2//manifests/1", code: codeNameInvalid},
		{name: "upper case digest", path: "/v2/a/blobs/sha256:" + strings.ToUpper(testDigest.Encoded()), code: codeDigestInvalid},
		{name: "short digest", path: "/v2/a/blobs/" + testDigest.String()[:len(testDigest)-1], code: codeDigestInvalid},
		{name: "md5 digest", path: "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", code: codeDigestInvalid},
		{name: "sha384 digest", path: "/v2/a/blobs/" + digest.SHA384.FromString("x").String(), code: codeDigestInvalid},
		{name: "sha512 of sha256 length", path: "/v2/a/blobs/sha512:" + testDigest.Encoded(), code: codeDigestInvalid},
		{name: "traversal digest", path: "/v2/a/blobs/sha256:../x", code: codeNameUnknown},
		{name: "traversal digest in manifest", path: "/v2/a/manifests/sha256:..", code: codeDigestInvalid},
		{name: "tag too long", path: "/v2/a/manifests/" + strings.Repeat("t", 129), code: codeTagInvalid},
		{name: "tag with illegal character", path: "/v2/a/manifests/t!g", code: codeTagInvalid},
		{name: "tag starting with dot", path: "/v2/a/manifests/.t", code: codeTagInvalid},
		{name: "unknown endpoint", path: "/v2/a/b", code: codeNameUnknown},
		{name: "not the API", path: "/v1/_ping", code: codeNameUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseRequest(u)
			if tt.code != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != tt.code {
					t.Fatalf("parseRequest(%q) error = %v, want code %s", tt.path, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRequest(%q): %v", tt.path, err)
			}
			if got != tt.want {
				t.Fatalf("parseRequest(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, repo, ns string
		want           target
		invalid        bool
	}{
		{name: "official image", repo: "node", want: target{host: "docker.io", path: "library/node"}},
		{name: "official image with library", repo: "library/node", want: target{host: "docker.io", path: "library/node"}},
		{name: "user image", repo: "grafana/grafana", want: target{host: "docker.io", path: "grafana/grafana"}},
		{name: "host prefix", repo: "ghcr.io/org/app", want: target{host: "ghcr.io", path: "org/app"}},
		{name: "host with port", repo: "registry.local:5000/app", want: target{host: "registry.local:5000", path: "app"}},
		{name: "ns wins", repo: "org/app", ns: "ghcr.io", want: target{host: "ghcr.io", path: "org/app"}},
		{name: "ns docker alias", repo: "node", ns: "registry-1.docker.io", want: target{host: "docker.io", path: "library/node"}},
		{name: "ns upper case folds", repo: "library/node", ns: "Docker.IO", want: target{host: "docker.io", path: "library/node"}},
		{name: "ns with slash", repo: "node", ns: "evil.com/x", invalid: true},
		{name: "ns with spaces", repo: "node", ns: "a b", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := resolveTarget(tt.repo, tt.ns, "docker.io")
			if tt.invalid {
				if err == nil {
					t.Fatalf("resolveTarget(%q, %q) = %+v, want an error", tt.repo, tt.ns, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolveTarget(%q, %q) = %+v, %v; want %+v", tt.repo, tt.ns, got, err, tt.want)
			}
		})
	}
}

// FuzzParseRequest checks that no input panics, and that whatever parses
// names nothing that could escape a path: no '..', no '%', no empty component.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/library/node/manifests/10", "/v2/a/blobs/" + testDigest.String(),
		"/v2/a/blobs/uploads/x", "/v2/a/../b/tags/list",
		"/v2/a/manifests/" + digest.SHA512.FromString("x").String(), "/v2/a/blobs/" + digest.SHA384.FromString("x").String(), "/v2/a%2fb/manifests/1?ns=docker.io"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		u, err := url.Parse(path)
		if err != nil {
			return
		}
		req, err := parseRequest(u)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("parseRequest(%q) returned a non-OCI error %v", path, err)
			}
			return
		}
		for _, s := range []string{req.name, req.tag} {
			if strings.Contains(s, "..") || strings.Contains(s, "%") || strings.Contains(s, "//") {
				t.Fatalf("parseRequest(%q) accepted unsafe %q", path, s)
			}
		}
		if req.digest != "" {
			if err := req.digest.Validate(); err != nil {
				t.Fatalf("parseRequest(%q) accepted digest %q: %v", path, req.digest, err)
			}
			if a := req.digest.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
				t.Fatalf("parseRequest(%q) accepted digest %q of algorithm %s", path, req.digest, a)
			}
		}
	})
}
