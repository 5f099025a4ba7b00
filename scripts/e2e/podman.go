package e2e

// Environment findings, from running Debian bookworm's podman 4.3.1 as root
// inside `unshare --net --pid --mount`:
//
//   - A pull needs no daemon and no systemd: --cgroup-manager cgroupfs and
//     --events-backend file keep it away from systemd and journald, and
//     --root, --runroot and --tmpdir move all its state into the test's
//     directory. The vfs storage driver unpacks layers as plain copies and
//     mounts nothing.
//   - CONTAINERS_REGISTRIES_CONF replaces /etc/containers/registries.conf,
//     but the drop-in directory is still read: from
//     $HOME/.config/containers/registries.conf.d if that exists, else from
//     /etc/containers/registries.conf.d. An empty one under a private HOME
//     makes the rendered file the whole registry configuration.
//   - A [[registry.mirror]] with insecure = true is spoken to in plain HTTP
//     after HTTPS fails (--tls-verify=false is not needed), and its
//     location's path is a prefix of the repository: "HOST:PORT/docker.io"
//     asks for /v2/docker.io/library/node/manifests/10.
//   - When the mirror fails podman falls back to the registry itself; only
//     the loopback-only namespace makes that fail, so a pull that succeeds
//     here came through the mirror.
//   - `podman image inspect --format '{{.Id}}'` prints the config digest's
//     hex, without "sha256:".

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// registriesConfExample is the documented registries.conf, relative to
// the repository root; its mirror locations name the placeholder address
// exampleMirrorHost.
const (
	registriesConfExample = "docs/examples/podman/registries.conf"
	exampleMirrorHost     = "127.0.0.1:5000"
)

var (
	mirrorTable    = regexp.MustCompile(`(?m)^\[\[registry\.mirror\]\]\s*$`)
	mirrorLocation = regexp.MustCompile(`(?m)^(\s*location\s*=\s*")` + regexp.QuoteMeta(exampleMirrorHost) + `(/[^"]*")`)
	insecureTrue   = regexp.MustCompile(`(?m)^\s*insecure\s*=\s*true\b`)
)

// WriteRegistriesConf renders the documented registries.conf for a
// plain-HTTP mirror at mirrorURL into a fresh file and returns its path,
// for CONTAINERS_REGISTRIES_CONF. So the file users copy is the one the
// tests prove, it fails the test unless every [[registry.mirror]] has a
// location at the placeholder address and insecure = true.
func WriteRegistriesConf(t testing.TB, mirrorURL string) string {
	t.Helper()
	mirror, err := url.Parse(mirrorURL)
	if err != nil || mirror.Host == "" {
		t.Fatalf("mirror URL %q: %v", mirrorURL, err)
	}
	src, err := findUpward(registriesConfExample)
	if err != nil {
		t.Fatal(err)
	}
	template, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := renderRegistriesConf(string(template), mirror.Host)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	path := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(path, []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// renderRegistriesConf points every mirror location of the template at
// mirrorHost, keeping each location's registry prefix.
func renderRegistriesConf(template, mirrorHost string) (string, error) {
	mirrors := len(mirrorTable.FindAllStringIndex(template, -1))
	switch {
	case mirrors == 0:
		return "", fmt.Errorf("no [[registry.mirror]] entry")
	case len(mirrorLocation.FindAllStringIndex(template, -1)) != mirrors:
		return "", fmt.Errorf(`want every [[registry.mirror]] at location = "%s/REGISTRY"`, exampleMirrorHost)
	case len(insecureTrue.FindAllStringIndex(template, -1)) != mirrors:
		return "", fmt.Errorf("want insecure = true on every [[registry.mirror]]: the mirror under test speaks plain HTTP")
	}
	return mirrorLocation.ReplaceAllString(template, "${1}"+mirrorHost+"${2}"), nil
}

// Podman runs podman as a client with no daemon, no systemd and no state
// outside a directory of its own, configured by one registries.conf.
type Podman struct {
	bin string
	dir string
	env []string
}

// NewPodman prepares an isolated podman whose only registry configuration
// is the file registriesConf. A cleanup removes its directory (unless
// E2E_KEEP=1).
func NewPodman(t testing.TB, registriesConf string) *Podman {
	t.Helper()
	bin, err := lookProgram("E2E_PODMAN", "podman", "/usr/bin/podman")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): runroot holds sockets and locks, and test names make
	// paths long.
	dir, err := os.MkdirTemp("", "e2e-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{bin: bin, dir: dir}
	t.Cleanup(func() { p.cleanup(t) })
	home := filepath.Join(dir, "home")
	// An empty drop-in directory shadows /etc/containers/registries.conf.d.
	if err := os.MkdirAll(filepath.Join(home, ".config", "containers", "registries.conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"containers.conf": "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
		// containers/storage refuses a file without both roots, even
		// though --root and --runroot override them.
		"storage.conf": fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
			filepath.Join(dir, "root"), filepath.Join(dir, "runroot")),
		"policy.json": `{"default": [{"type": "insecureAcceptAnything"}]}` + "\n",
		"auth.json":   "{}\n", // no ambient credentials: the mirror holds them
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{
		"PATH=" + systemPath(),
		"HOME=" + home,
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + registriesConf,
		"REGISTRY_AUTH_FILE=" + filepath.Join(dir, "auth.json"),
	}
	return p
}

// Podman runs `podman args...` with the isolating global options and
// returns its standard output without the trailing newline; a failure's
// error carries standard error.
func (p *Podman) Podman(ctx context.Context, args ...string) (string, error) {
	global := []string{
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
	}
	cmd := exec.CommandContext(ctx, p.bin, append(global, args...)...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out := strings.TrimSuffix(stdout.String(), "\n")
	if err != nil {
		return out, fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Pull pulls ref for linux/amd64, the platform of the fixtures' first
// image, with the signature policy that accepts the unsigned fixtures.
func (p *Podman) Pull(ctx context.Context, ref string) (string, error) {
	return p.Podman(ctx, "pull", "--quiet", "--platform", "linux/amd64",
		"--signature-policy", filepath.Join(p.dir, "policy.json"), ref)
}

func (p *Podman) cleanup(t testing.TB) {
	t.Helper()
	if os.Getenv("E2E_KEEP") == "1" {
		t.Logf("kept podman directory %s", p.dir)
		return
	}
	if err := unmountUnder(p.dir); err != nil {
		t.Error(err)
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Errorf("remove podman directory: %v", err)
	}
}
