package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func TestManifestsKeepExactBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	// Whitespace and key order are part of the digest: they must survive.
	data := []byte("{\n  \"schemaVersion\": 2,\n\t\"mediaType\": \"" + ociManifest + "\"  }\n")

	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.PutManifest(ctx, testRepo, ociManifest, data)
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(data); d != want {
		t.Errorf("PutManifest = %s, want %s", d, want)
	}
	if _, err := s.PutManifest(ctx, "docker.io/library/other", ociManifest, data); err != nil {
		t.Fatalf("second PutManifest of the same bytes: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir})
	mediaType, got, err := s.Manifest(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if mediaType != ociManifest || !bytes.Equal(got, data) {
		t.Errorf("Manifest = %q, %q; want %q, %q", mediaType, got, ociManifest, data)
	}
	if repos := repositoriesUsing(t, s, d); len(repos) != 2 {
		t.Errorf("repositories using the manifest = %v, want two", repos)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Manifests != 1 {
		t.Errorf("Stats.Manifests = %d, want 1", st.Manifests)
	}
}

func TestManifestNotCached(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	if _, _, err := s.Manifest(context.Background(), digest.FromString("absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Manifest: err = %v, want fs.ErrNotExist", err)
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC)
	v1, v2 := digest.FromString("v1"), digest.FromString("v2")
	other := "registry.example.com:5000/library/node" // host with a port: the colon is no separator

	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, put := range []struct {
		repo, tag string
		d         digest.Digest
		at        time.Time
	}{
		{testRepo, "latest", v1, at},
		{testRepo, "latest", v2, at.Add(time.Minute)}, // moved upstream
		{other, "latest", v1, at},
		{testRepo, "22", v1, at},
	} {
		if err := s.PutTag(ctx, put.repo, put.tag, put.d, put.at); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Options{Dir: dir})
	tests := []struct {
		name, repo, tag string
		want            digest.Digest
		wantAt          time.Time
		wantErr         error
	}{
		{"moved tag", testRepo, "latest", v2, at.Add(time.Minute), nil},
		{"same tag, other repository", other, "latest", v1, at, nil},
		{"other tag", testRepo, "22", v1, at, nil},
		{"unknown tag", testRepo, "21", "", time.Time{}, fs.ErrNotExist},
		{"unknown repository", "docker.io/library/absent", "latest", "", time.Time{}, fs.ErrNotExist},
		{"empty tag", testRepo, "", "", time.Time{}, ErrInvalidName},
		{"NUL in repository", "docker.io/a\x00b", "latest", "", time.Time{}, ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, fetchedAt, err := s.Tag(ctx, tt.repo, tt.tag)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Tag: err = %v, want %v", err, tt.wantErr)
			}
			if d != tt.want || !fetchedAt.Equal(tt.wantAt) {
				t.Errorf("Tag = %s at %v, want %s at %v", d, fetchedAt, tt.want, tt.wantAt)
			}
		})
	}
	t.Run("stats", func(t *testing.T) {
		t.Parallel()
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Tags != 3 {
			t.Errorf("Stats.Tags = %d, want 3", st.Tags)
		}
	})
}

func TestRowsRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 123456789)
	blob := blobRow{Size: 1 << 40, Created: at, LastAccess: at.Add(time.Second)}
	if got, err := unmarshalBlobRow(blob.marshal()); err != nil || got != blob {
		t.Errorf("blob row: got %+v, %v; want %+v", got, err, blob)
	}
	tag := tagRow{Digest: digest.FromString("x"), FetchedAt: at}
	if got, err := unmarshalTagRow(tag.marshal()); err != nil || got != tag {
		t.Errorf("tag row: got %+v, %v; want %+v", got, err, tag)
	}
	manifest := manifestRow{MediaType: ociManifest, Created: at, Data: []byte("{}")}
	got, err := unmarshalManifestRow(manifest.marshal())
	if err != nil || got.MediaType != manifest.MediaType || !got.Created.Equal(at) || string(got.Data) != "{}" {
		t.Errorf("manifest row: got %+v, %v; want %+v", got, err, manifest)
	}
	for _, bad := range [][]byte{nil, {0}, {rowVersion}, {rowVersion, 0, 5, 'a'}} {
		if _, err := unmarshalManifestRow(bad); err == nil {
			t.Errorf("unmarshal %v: no error", bad)
		}
	}
}
