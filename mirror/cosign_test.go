//go:build cosign

package mirror_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/upstream"
)

// cosignBin is the cosign binary: $COSIGN_BIN, else cosign on the PATH.
// scripts/install-cosign.sh installs it; `make cosign` runs these tests.
func cosignBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("COSIGN_BIN"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("cosign")
	if err != nil {
		t.Fatal("cosign is not installed: run scripts/install-cosign.sh, or set COSIGN_BIN")
	}
	return bin
}

// cosign runs the cosign binary in dir, with a docker config that logs
// it in to the upstream only, and returns its combined output.
func cosign(t *testing.T, dir string, e *env, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(cosignBin(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"DOCKER_CONFIG="+dir,
		"COSIGN_PASSWORD=",
		"COSIGN_YES=true",
		"COSIGN_EXPERIMENTAL=1", // for --registry-referrers-mode=oci-1-1
		"SIGSTORE_NO_CACHE=true",
		"TUF_ROOT="+filepath.Join(dir, "tuf"),
		"HOME="+dir,
	)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cosignWorkspace is a directory with a key pair and a docker config that
// holds the upstream's push credentials (never the mirror's: clients of a
// mirror pull anonymously).
func cosignWorkspace(t *testing.T, e *env) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(hubUser + ":" + hubPassword))
	config, err := json.Marshal(map[string]any{"auths": map[string]any{e.upstream.Host(): map[string]string{"auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cosign(t, dir, e, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return dir
}

// TestCosignVerifiesThroughTheMirror: an image signed with cosign on the
// upstream verifies through the mirror, with the signature as a
// sha256-<hex>.sig tag (cosign's default) and, from an upstream with the
// referrers API, as an OCI 1.1 referrer.
func TestCosignVerifiesThroughTheMirror(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"tag", "referrers"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{referrers: mode == "referrers"})
			img, err := e.upstream.PushImage("library/app", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 512, OCI: true, Seed: 21})
			if err != nil {
				t.Fatal(err)
			}
			dir := cosignWorkspace(t, e)
			digestRef := "/library/app@" + img.Manifest.Digest.String()
			sign := []string{"sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes"}
			verify := []string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-http-registry"}
			if mode == "referrers" {
				sign = append(sign, "--registry-referrers-mode=oci-1-1")
				verify = append(verify, "--experimental-oci11")
			}
			if out, err := cosign(t, dir, e, append(sign, e.upstream.Host()+digestRef)...); err != nil {
				t.Fatalf("cosign sign on the upstream: %v\n%s", err, out)
			}
			e.upstream.Reset()
			mirrorHost := strings.TrimPrefix(e.mirror.URL, "http://")
			out, err := cosign(t, dir, e, append(verify, mirrorHost+digestRef)...)
			if err != nil {
				t.Fatalf("cosign verify through the mirror: %v\n%s", err, out)
			}
			if !strings.Contains(out, "The signatures were verified against the specified public key") {
				t.Fatalf("cosign verify through the mirror said:\n%s", out)
			}
			// The mirror found the signature where cosign put it upstream.
			sigTag := upstream.FallbackTag(img.Manifest.Digest) + ".sig"
			asked := e.upstream.CountRequests(func(r registrytest.Request) bool {
				if mode == "referrers" {
					return r.Kind == registrytest.KindReferrers && r.Repo == "library/app"
				}
				return r.Kind == registrytest.KindManifest && r.Reference == sigTag
			})
			if asked == 0 {
				t.Fatalf("the mirror never asked the upstream for the signature (%s)", mode)
			}
		})
	}
}
