package bucket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/cache/s3lease"
	"github.com/regmirror/regmirror/internal/s3test"
)

func newBucket(t *testing.T, srv *s3test.Server, name, holder string) *Bucket {
	t.Helper()
	b, err := New(t.Context(), Options{Holder: holder, LeaseTTL: time.Minute, Blobs: s3blobs.Options{
		Endpoint: "http://" + srv.Endpoint, Bucket: name, Region: s3test.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, SpoolDir: t.TempDir(), MaxRetries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, b *Bucket, repo string, d digest.Digest, offset int64) ([]byte, error) {
	t.Helper()
	rc, _, err := b.OpenBlob(t.Context(), repo, d, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// A blob shared for one repository is read for it, from any offset, and
// is a miss for every other repository of the same or another registry:
// the bucket never answers for a repository whose upstream was not asked.
func TestBlobsAreReadOnlyThroughTheirRepositoriesLinks(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	b := newBucket(t, srv, srv.NewBucket(t), "http://10.0.0.1:5000")
	data := []byte("a private layer")
	d := digest.FromBytes(data)
	if holder, err := b.ClaimFill(t.Context(), "docker.io/team/private", d); err != nil || holder != "" {
		t.Fatalf("claim: holder %q, %v", holder, err)
	}
	if err := b.Share(t.Context(), "docker.io/team/private", d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, b, "docker.io/team/private", d, 2)
	if err != nil || !bytes.Equal(got, data[2:]) {
		t.Fatalf("read from 2 = %q, %v; want %q", got, err, data[2:])
	}
	for _, repo := range []string{"docker.io/library/public", "ghcr.io/team/private", "docker.io/team"} {
		if _, err := readAll(t, b, repo, d, 0); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("read for %s: %v; want a miss", repo, err)
		}
	}
	// Shared again for a second repository, the blob is not uploaded
	// again, and is read for both.
	if err := b.Share(t.Context(), "docker.io/library/public", d, bytes.NewReader(nil), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, b, "docker.io/library/public", d, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read for the second repository = %q, %v", got, err)
	}
}

// One claim of a blob's fill at a time, across replicas; the claim ends
// with its context, and the next claim takes it.
func TestClaimFillIsHeldUntilItsContextEnds(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	name := srv.NewBucket(t)
	a, b := newBucket(t, srv, name, "http://10.0.0.1:5000"), newBucket(t, srv, name, "http://10.0.0.2:5000")
	d := digest.FromString("a layer")
	ctx, end := context.WithCancel(t.Context())
	if holder, err := a.ClaimFill(ctx, "docker.io/library/node", d); err != nil || holder != "" {
		t.Fatalf("first claim: holder %q, %v; want it taken", holder, err)
	}
	if holder, err := b.ClaimFill(t.Context(), "docker.io/library/node", d); err != nil || holder != a.Holder() {
		t.Fatalf("second claim: holder %q, %v; want %s", holder, err, a.Holder())
	}
	end()
	// The lease lasts a minute: only its release lets the claim through
	// before this guard ends.
	guard, stop := context.WithTimeout(t.Context(), 20*time.Second)
	defer stop()
	for {
		holder, err := b.ClaimFill(guard, "docker.io/library/node", d)
		if err != nil {
			t.Fatalf("claim after the first one ended: %v", err)
		}
		if holder == "" {
			break // released when the first claim's context ended
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A fill of a digest for one repository does not hold up a fill of the
// same digest for another: each asks its own upstream, and a slow or
// hostile registry must not stall the others' downloads.
func TestClaimFillIsPerRepository(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	name := srv.NewBucket(t)
	a, b := newBucket(t, srv, name, "http://10.0.0.1:5000"), newBucket(t, srv, name, "http://10.0.0.2:5000")
	d := digest.FromString("a layer")
	if holder, err := a.ClaimFill(t.Context(), "evil.example/x/y", d); err != nil || holder != "" {
		t.Fatalf("claim for evil.example/x/y: holder %q, %v; want it taken", holder, err)
	}
	for _, c := range []*Bucket{a, b} {
		ctx, end := context.WithCancel(t.Context())
		if holder, err := c.ClaimFill(ctx, "docker.io/library/node", d); err != nil || holder != "" {
			t.Errorf("claim by %s for docker.io/library/node: holder %q, %v; want it taken", c.Holder(), holder, err)
		}
		end()
		// Wait for the release, so that the next replica may take it.
		for {
			_, _, held, err := b.leases.Held(t.Context(), s3lease.FillName("docker.io/library/node", d))
			if err != nil {
				t.Fatal(err)
			}
			if !held {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// A bucket that does not answer is never a miss: the mirror must not
// take it for one and fetch from the upstream behind the others' backs.
func TestABucketDownIsNotAMiss(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	b := newBucket(t, srv, srv.NewBucket(t), "http://10.0.0.1:5000")
	srv.Stop()
	d := digest.FromString("a layer")
	if _, err := readAll(t, b, "docker.io/library/node", d, 0); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read with the bucket down: %v; want an error that is not a miss", err)
	}
	if _, err := b.ClaimFill(t.Context(), "docker.io/library/node", d); err == nil {
		t.Error("claim with the bucket down: no error")
	}
}

// A manifest is read back with its media type for the repository it was
// shared for, and is a miss for another; bytes in its object that are
// not its own are removed and read as a miss.
func TestManifestsKeepTheirMediaTypeAndTheirLinks(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	name := srv.NewBucket(t)
	b := newBucket(t, srv, name, "http://10.0.0.1:5000")
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	const mediaType = "application/vnd.oci.image.manifest.v1+json"
	if err := b.ShareManifest(t.Context(), "docker.io/library/node", d, mediaType, data); err != nil {
		t.Fatal(err)
	}
	gotType, got, err := b.ReadManifest(t.Context(), "docker.io/library/node", d)
	if err != nil || gotType != mediaType || !bytes.Equal(got, data) {
		t.Fatalf("ReadManifest = %q %q %v", gotType, got, err)
	}
	if _, _, err := b.ReadManifest(t.Context(), "docker.io/team/app", d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read for another repository: %v; want a miss", err)
	}

	evil := []byte(`{"schemaVersion":2,"evil":true}`)
	if _, err := srv.Client(t).PutObject(t.Context(), name, b.manifestKey(d), bytes.NewReader(evil), int64(len(evil)),
		minio.PutObjectOptions{ContentType: mediaType}); err != nil {
		t.Fatal(err)
	}
	if _, got, err := b.ReadManifest(t.Context(), "docker.io/library/node", d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read of a replaced manifest = %q, %v; want a miss", got, err)
	}
	if _, err := srv.Client(t).StatObject(t.Context(), name, b.manifestKey(d), minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		t.Errorf("the replaced manifest's object is still there: %v", err)
	}
}

// A download that did not take a blob's fill lease (it read the blob from
// the replica that did) uploads nothing, however many replicas kept a
// copy: it only links the blob to its repository.
func TestOnlyTheDownloadHoldingTheLeaseUploads(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	name := srv.NewBucket(t)
	owner, other := newBucket(t, srv, name, "http://10.0.0.1:5000"), newBucket(t, srv, name, "http://10.0.0.2:5000")
	data := []byte("a layer two replicas kept")
	d := digest.FromBytes(data)
	if err := other.Share(t.Context(), "docker.io/library/node", d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Blobs().Stat(t.Context(), d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a download without the lease uploaded the blob: %v", err)
	}
	fill, end := context.WithCancel(t.Context())
	if holder, err := owner.ClaimFill(fill, "docker.io/library/node", d); err != nil || holder != "" {
		t.Fatalf("claim: holder %q, %v", holder, err)
	}
	if err := owner.Share(fill, "docker.io/library/node", d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	end()
	got, err := readAll(t, other, "docker.io/library/node", d, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read after the lease holder shared it = %q, %v", got, err)
	}
}
