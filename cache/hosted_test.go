package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func openHosted(t *testing.T, s *Store) *Hosted {
	t.Helper()
	h, err := s.Hosted(HostedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pushBlob uploads data to repository name in two chunks.
func pushBlob(t *testing.T, h *Hosted, name string, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	id, err := h.StartUpload(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	if _, err := h.WriteUpload(ctx, name, id, 0, bytes.NewReader(data[:half])); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteUpload(ctx, name, id, int64(half), bytes.NewReader(data[half:])); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	if size, err := h.CommitUpload(ctx, name, id, d); err != nil || size != int64(len(data)) {
		t.Fatalf("CommitUpload = %d, %v", size, err)
	}
	return d
}

func keptReason(t *testing.T, s *Store, d digest.Digest) string {
	t.Helper()
	reason, err := s.Kept(context.Background(), d)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return reason
}

// TestHostedLinksKeepContent: content is kept while any hosted repository
// holds it; the last unlink lifts the mark and deletes what nothing uses,
// but leaves what the cache uses.
func TestHostedLinksKeepContent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, Options{})
	h := openHosted(t, s)
	data, _ := randomBlob(t, 4096)
	d := pushBlob(t, h, "team/a", data)
	if _, err := h.LinkBlob(ctx, "team/b", d); err != nil {
		t.Fatal(err)
	}
	if got := keptReason(t, s, d); got != keepReasonHosted {
		t.Fatalf("kept reason = %q, want %q", got, keepReasonHosted)
	}
	if err := h.UnlinkBlob(ctx, "team/a", d); err != nil {
		t.Fatal(err)
	}
	if _, err := h.StatBlob(ctx, "team/a", d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("team/a still has the blob: %v", err)
	}
	if got := keptReason(t, s, d); got != keepReasonHosted {
		t.Fatalf("team/b still holds it, but the kept reason = %q", got)
	}
	if err := h.UnlinkBlob(ctx, "team/b", d); err != nil {
		t.Fatal(err)
	}
	if got := keptReason(t, s, d); got != "" {
		t.Fatalf("no hosted repository holds it, but it is kept (%q)", got)
	}
	assertNotCached(t, s, d)

	// A blob the cache uses too stays when the hosted repository lets go.
	shared, sd := randomBlob(t, 2048)
	fetchAll(t, s, sd, bytesFetch(shared, int64(len(shared)), nil))
	if _, err := h.LinkBlob(ctx, "team/a", sd); err != nil {
		t.Fatal(err)
	}
	if cached, hosted, err := s.Holders(ctx, sd); err != nil || len(cached) != 1 || len(hosted) != 1 || hosted[0] != "team/a" {
		t.Fatalf("Holders of a blob both cached and hosted = %v, %v, %v", cached, hosted, err)
	}
	if err := h.UnlinkBlob(ctx, "team/a", sd); err != nil {
		t.Fatal(err)
	}
	if got := fetchAll(t, s, sd, failFetch(t)); !bytes.Equal(got, shared) {
		t.Fatal("the cached blob went with its hosted link")
	}
}

// TestHostedManifestLifecycle: a manifest needs its blobs, carries its
// tags and referrers entry, and takes them along when deleted.
func TestHostedManifestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, Options{})
	h := openHosted(t, s)
	layer, _ := randomBlob(t, 1024)
	ld := pushBlob(t, h, "team/app", layer)
	data := []byte(`{"schemaVersion":2,"layers":["` + ld.String() + `"]}`)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data),
		Size: int64(len(data)), ArtifactType: "application/example"}
	subject := digest.FromString("subject")

	missing := digest.FromString("never pushed")
	err := h.PutManifest(ctx, "team/app", desc, data, []digest.Digest{ld, missing}, subject, []string{"1"})
	var me *MissingContentError
	if !errors.As(err, &me) || me.MissingDigest() != missing || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("PutManifest naming a missing blob = %v, want a MissingContentError for %s", err, missing)
	}
	if err := h.PutManifest(ctx, "team/app", desc, data, []digest.Digest{ld}, subject, []string{"1", "latest"}); err != nil {
		t.Fatal(err)
	}
	if tags, err := h.Tags(ctx, "team/app"); err != nil || len(tags) != 2 || tags[0] != "1" || tags[1] != "latest" {
		t.Fatalf("Tags = %v, %v", tags, err)
	}
	refs, err := h.Referrers(ctx, "team/app", subject)
	if err != nil || len(refs) != 1 || refs[0].Digest != desc.Digest || refs[0].ArtifactType != "application/example" {
		t.Fatalf("Referrers = %+v, %v", refs, err)
	}
	if names, err := h.Repositories(ctx); err != nil || len(names) != 1 || names[0] != "team/app" {
		t.Fatalf("Repositories = %v, %v", names, err)
	}

	if err := h.DeleteManifest(ctx, "team/app", desc.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Tag(ctx, "team/app", "latest"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tag after its manifest was deleted: %v", err)
	}
	if refs, err := h.Referrers(ctx, "team/app", subject); err != nil || len(refs) != 0 {
		t.Fatalf("Referrers after delete = %+v, %v", refs, err)
	}
	if _, _, err := s.Manifest(ctx, desc.Digest); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a manifest nothing uses is still stored: %v", err)
	}
	if _, err := h.StatBlob(ctx, "team/app", ld); err != nil {
		t.Fatalf("the layer went with the manifest: %v", err)
	}
}

// TestUploadDigestMismatchStoresNothing: a wrong digest ends the upload and
// stores nothing.
func TestUploadDigestMismatchStoresNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, Options{})
	h := openHosted(t, s)
	data, d := randomBlob(t, 1000)
	id, err := h.StartUpload(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteUpload(ctx, "team/app", id, 0, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	wrong := digest.FromString("other")
	_, err = h.CommitUpload(ctx, "team/app", id, wrong)
	var de *DigestError
	if !errors.As(err, &de) || de.ContentDigest() != d {
		t.Fatalf("CommitUpload with a wrong digest = %v, want a DigestError naming %s", err, d)
	}
	for _, dg := range []digest.Digest{d, wrong} {
		assertNotCached(t, s, dg)
	}
	if _, err := h.UploadSize(ctx, "team/app", id); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the upload survived a digest mismatch: %v", err)
	}
	if _, err := h.WriteUpload(ctx, "team/app", id, 0, bytes.NewReader(data)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("writing to the ended upload: %v", err)
	}
}
