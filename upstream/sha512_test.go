package upstream

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// A manifest a registry stores under its sha512 digest is fetched by that
// digest, verified with sha512 (corrupt bytes are a temporary mismatch), and
// resolved by it to a descriptor that keeps the sha512 digest, although the
// registry answers with a sha256 Docker-Content-Digest.
func TestSHA512Manifest(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	d := digest.SHA512.FromBytes(data)
	if _, err := reg.PutManifest("library/node", d.String(), ocispec.MediaTypeImageManifest, data); err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, reg, Config{}, nil, Options{})
	ctx := context.Background()

	if _, got, err := c.GetManifest(ctx, "library/node", d.String()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetManifest by sha512: %v", err)
	}
	desc, err := c.HeadManifest(ctx, "library/node", d.String())
	if err != nil || desc.Digest != d || desc.Size != int64(len(data)) || desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("HeadManifest by sha512 = %+v, %v; want digest %s", desc, err, d)
	}

	// The fixture keys manifest faults by the digest it announces, the sha256.
	reg.InjectFault(digest.SHA256.FromBytes(data), registrytest.Fault{Kind: registrytest.Corrupt})
	_, _, err = c.GetManifest(ctx, "library/node", d.String())
	if e := asError(t, err); !errors.Is(err, ErrDigestMismatch) || !e.Temporary() || e.Code != "DIGEST_INVALID" {
		t.Fatalf("corrupt manifest by sha512: %v, want a temporary digest mismatch", err)
	}
}
