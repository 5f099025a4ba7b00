package ociserver

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
		want Request
		code string // expected error code; empty for success
	}{
		{name: "base", path: "/v2/", want: Request{Kind: KindBase}},
		{name: "base without slash", path: "/v2", want: Request{Kind: KindBase}},
		{name: "catalog", path: "/v2/_catalog", want: Request{Kind: KindCatalog}},
		{name: "manifest by tag", path: "/v2/library/node/manifests/10", want: Request{Kind: KindManifest, Name: "library/node", Tag: "10"}},
		{name: "manifest by digest", path: "/v2/library/node/manifests/" + testDigest.String(), want: Request{Kind: KindManifest, Name: "library/node", Digest: testDigest}},
		{name: "blob", path: "/v2/a/b/c/blobs/" + testDigest.String(), want: Request{Kind: KindBlob, Name: "a/b/c", Digest: testDigest}},
		{name: "sha512 manifest", path: "/v2/a/manifests/" + testDigest512.String(), want: Request{Kind: KindManifest, Name: "a", Digest: testDigest512}},
		{name: "sha512 blob", path: "/v2/a/blobs/" + testDigest512.String(), want: Request{Kind: KindBlob, Name: "a", Digest: testDigest512}},
		{name: "tags", path: "/v2/node/tags/list", want: Request{Kind: KindTags, Name: "node"}},
		{name: "upload start", path: "/v2/team/app/blobs/uploads/", want: Request{Kind: KindBlobUpload, Name: "team/app"}},
		{name: "upload session", path: "/v2/team/app/blobs/uploads/abc", want: Request{Kind: KindBlobUpload, Name: "team/app", UploadID: "abc"}},
		{name: "referrers", path: "/v2/team/app/referrers/" + testDigest.String(), want: Request{Kind: KindReferrers, Name: "team/app", Digest: testDigest}},
		{name: "host prefix kept in name", path: "/v2/ghcr.io/org/app/manifests/1", want: Request{Kind: KindManifest, Name: "ghcr.io/org/app", Tag: "1"}},
		{name: "ns parameter", path: "/v2/library/node/manifests/10?ns=docker.io", want: Request{Kind: KindManifest, Name: "library/node", Tag: "10", NS: "docker.io"}},

		{name: "dot dot component", path: "/v2/a/../b/manifests/1", code: CodeNameInvalid},
		{name: "escaped dots", path: "/v2/a/%2e%2e/b/manifests/1", code: CodeNameInvalid},
		{name: "escaped slash", path: "/v2/a%2Fb/manifests/1", code: CodeNameInvalid},
		{name: "upper case", path: "/v2/Library/Node/manifests/1", code: CodeNameInvalid},
		{name: "empty component", path: "/v2/a//b/manifests/1", code: CodeNameInvalid},
		{name: "name too long", path: "/v2/" + strings.Repeat("a", 256) + "/manifests/1", code: CodeNameInvalid},
		{name: "empty name", path: "/v2//manifests/1", code: CodeNameInvalid},
		{name: "upper case digest", path: "/v2/a/blobs/sha256:" + strings.ToUpper(testDigest.Encoded()), code: CodeDigestInvalid},
		{name: "short digest", path: "/v2/a/blobs/" + testDigest.String()[:len(testDigest)-1], code: CodeDigestInvalid},
		{name: "md5 digest", path: "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", code: CodeDigestInvalid},
		{name: "sha384 digest", path: "/v2/a/blobs/" + digest.SHA384.FromString("x").String(), code: CodeDigestInvalid},
		{name: "sha512 of sha256 length", path: "/v2/a/blobs/sha512:" + testDigest.Encoded(), code: CodeDigestInvalid},
		{name: "traversal digest", path: "/v2/a/blobs/sha256:../x", code: CodeNameUnknown},
		{name: "traversal digest in manifest", path: "/v2/a/manifests/sha256:..", code: CodeDigestInvalid},
		{name: "tag too long", path: "/v2/a/manifests/" + strings.Repeat("t", 129), code: CodeTagInvalid},
		{name: "tag with illegal character", path: "/v2/a/manifests/t!g", code: CodeTagInvalid},
		{name: "tag starting with dot", path: "/v2/a/manifests/.t", code: CodeTagInvalid},
		{name: "unknown endpoint", path: "/v2/a/b", code: CodeNameUnknown},
		{name: "not the API", path: "/v1/_ping", code: CodeNameUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseRequest(u)
			if tt.code != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != tt.code {
					t.Fatalf("ParseRequest(%q) error = %v, want code %s", tt.path, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q): %v", tt.path, err)
			}
			if got != tt.want {
				t.Fatalf("ParseRequest(%q) = %+v, want %+v", tt.path, got, tt.want)
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
		req, err := ParseRequest(u)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseRequest(%q) returned a non-OCI error %v", path, err)
			}
			return
		}
		for _, s := range []string{req.Name, req.Tag} {
			if strings.Contains(s, "..") || strings.Contains(s, "%") || strings.Contains(s, "//") {
				t.Fatalf("ParseRequest(%q) accepted unsafe %q", path, s)
			}
		}
		if req.Digest != "" {
			if err := req.Digest.Validate(); err != nil {
				t.Fatalf("ParseRequest(%q) accepted digest %q: %v", path, req.Digest, err)
			}
			if a := req.Digest.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
				t.Fatalf("ParseRequest(%q) accepted digest %q of algorithm %s", path, req.Digest, a)
			}
		}
	})
}
