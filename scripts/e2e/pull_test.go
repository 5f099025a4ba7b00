//go:build e2e

package e2e_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/scripts/e2e"
)

// pullTimeout bounds one docker pull; a few KiB through loopback takes well
// under a second, so hitting it means something hangs.
const pullTimeout = 2 * time.Minute

// TestDockerPullsThroughRegistryMirror proves the harness end to end with a
// plain registry as the mirror: dockerd configured from daemon.json.example
// pulls Docker Hub names through it, picks the linux/amd64 image out of a
// multi-arch index, and records the index digest.
func TestDockerPullsThroughRegistryMirror(t *testing.T) {
	reg := startRegistry(t)
	tests := []struct {
		name   string
		pull   string // what the user types
		repo   string // what dockerd asks the mirror for
		tag    string
		format imageFormat
	}{
		{name: "docker manifest list", pull: "busybox:1", repo: "library/busybox", tag: "1", format: dockerFormat},
		{name: "oci index", pull: "alpine:3", repo: "library/alpine", tag: "3", format: ociFormat},
	}
	pushed := make([]multiArchImage, len(tests))
	for i, tt := range tests {
		pushed[i] = pushMultiArch(t, reg, tt.repo+":"+tt.tag, tt.format)
	}
	reg.resetRequests()
	d := e2e.StartDockerd(t, reg.URL)

	for i, tt := range tests {
		img := pushed[i]
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
			defer cancel()
			if out, err := d.Docker(ctx, "pull", tt.pull); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}

			wantID, err := img.amd64.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			if id := inspect(ctx, t, d, tt.pull, "{{.Id}}"); id != wantID.String() {
				t.Errorf("image ID = %s, want the linux/amd64 config digest %s", id, wantID)
			}
			var repoDigests []string
			if err := json.Unmarshal([]byte(inspect(ctx, t, d, tt.pull, "{{json .RepoDigests}}")), &repoDigests); err != nil {
				t.Fatal(err)
			}
			wantRepoDigest := strings.Split(tt.pull, ":")[0] + "@" + img.index.String()
			if !slices.Contains(repoDigests, wantRepoDigest) {
				t.Errorf("RepoDigests = %v, want %s (the index digest)", repoDigests, wantRepoDigest)
			}

			assertPulledThrough(t, reg, tt.repo, tt.tag, img)
		})
	}
}

// assertPulledThrough checks the registry's log: the tag was resolved there,
// the amd64 manifest and every blob of it were fetched from it, and nothing
// of the arm64 image was.
func assertPulledThrough(t *testing.T, reg *testRegistry, repo, tag string, img multiArchImage) {
	t.Helper()
	got := reg.requestsFor(repo)
	amd64, err := img.amd64.Digest()
	if err != nil {
		t.Fatal(err)
	}
	arm64, err := img.arm64.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "HEAD /v2/"+repo+"/manifests/"+tag) && !slices.Contains(got, "GET /v2/"+repo+"/manifests/"+tag) {
		t.Errorf("the registry saw no request for tag %s:%s; requests: %v", repo, tag, got)
	}
	want := append([]string{"GET /v2/" + repo + "/manifests/" + amd64.String()}, blobRequests(t, repo, img.amd64)...)
	for _, req := range want {
		if !slices.Contains(got, req) {
			t.Errorf("the registry did not see %q; requests: %v", req, got)
		}
	}
	for _, req := range got {
		if strings.Contains(req, arm64.String()) {
			t.Errorf("dockerd fetched the arm64 image: %q", req)
		}
	}
}

// TestPullMissingFromMirrorFailsOffline proves the sandbox: dockerd tries
// the mirror first and, when the image is not there, falls back to Docker
// Hub, which in the loopback-only namespace must fail at once rather than
// download anything.
func TestPullMissingFromMirrorFailsOffline(t *testing.T) {
	reg := startRegistry(t)
	d := e2e.StartDockerd(t, reg.URL)
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()

	out, err := d.Docker(ctx, "pull", "hello-world:latest")
	if err == nil {
		t.Fatalf("pull of an image missing from the mirror succeeded, so it came from elsewhere:\n%s", out)
	}
	if ctx.Err() != nil {
		t.Fatalf("pull hung until the test's deadline instead of failing: %v", err)
	}
	t.Logf("pull failed as it must: %v", err)
	if got := reg.requestsFor("library/hello-world"); len(got) == 0 {
		t.Errorf("dockerd never asked the mirror for library/hello-world")
	}
}

// inspect returns `docker image inspect --format format ref`.
func inspect(ctx context.Context, t *testing.T, d *e2e.Dockerd, ref, format string) string {
	t.Helper()
	out, err := d.Docker(ctx, "image", "inspect", "--format", format, ref)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
