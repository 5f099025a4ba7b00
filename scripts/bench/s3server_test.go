package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The bench's versitygw serves a fresh bucket that a client with the
// storage section's credentials may write, and remove stops it and
// deletes its directory.
func TestS3ServerServesTheBucketOfItsStorageSection(t *testing.T) {
	t.Parallel()
	bin, err := findVersitygw("")
	if err != nil {
		t.Fatal(err)
	}
	s, err := startS3Server(t.Context(), bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.remove()

	section, err := s.storageSection()
	if err != nil {
		t.Fatal(err)
	}
	field := func(key string) string {
		m := regexp.MustCompile(`(?m)^    ` + key + `: (\S+)$`).FindStringSubmatch(section)
		if m == nil {
			t.Fatalf("storage section has no %s:\n%s", key, section)
		}
		return m[1]
	}
	secret, err := os.ReadFile(field("secret_access_key_file"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(s.endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(field("access_key_id"), string(bytes.TrimSpace(secret)), ""),
		Region: field("region"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if field("endpoint") != "http://"+s.endpoint {
		t.Errorf("endpoint %s, want http://%s", field("endpoint"), s.endpoint)
	}
	data := []byte("a blob")
	if _, err := c.PutObject(t.Context(), field("bucket"), "probe", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{}); err != nil {
		t.Fatalf("writing to the bucket with the section's credentials: %v", err)
	}

	s.remove()
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("after remove, %s: %v; want it gone", s.dir, err)
	}
	if resp, err := http.Get("http://" + s.endpoint + s3HealthPath); err == nil {
		resp.Body.Close()
		t.Errorf("versitygw still answers after remove: %s", resp.Status)
	}
}

func TestFindVersitygwTakesOnlyAnExecutable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findVersitygw(plain); err == nil {
		t.Errorf("findVersitygw(%s), not executable: no error", plain)
	}
	if _, err := findVersitygw(dir); err == nil {
		t.Errorf("findVersitygw(%s), a directory: no error", dir)
	}
	program := filepath.Join(dir, "versitygw")
	if err := os.WriteFile(program, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := findVersitygw(program); err != nil || got != program {
		t.Errorf("findVersitygw(%s) = %s, %v; want it back", program, got, err)
	}
}
