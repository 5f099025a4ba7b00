package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// hostsExamplesDir is where the documented containerd hosts.toml files
// live, relative to the repository root.
const hostsExamplesDir = "docs/examples/containerd/certs.d"

var (
	hostHeader   = regexp.MustCompile(`(?m)^\[host\."([^"]+)"\]\s*$`)
	serverLine   = regexp.MustCompile(`(?m)^\s*server\s*=`)
	capabilities = regexp.MustCompile(`(?m)^\s*capabilities\s*=\s*\["pull",\s*"resolve"\]\s*$`)
)

// WriteHostsDir renders the documented hosts.toml of each registry for a
// mirror at mirrorURL into a fresh certs.d-style directory and returns it,
// for `ctr images pull --hosts-dir` or CRI's config_path. So the files
// users copy are the ones the tests prove, it fails the test unless each
// has exactly one [host."..."] entry, capabilities pull and resolve, and no
// server line.
func WriteHostsDir(t testing.TB, mirrorURL string, registries ...string) string {
	t.Helper()
	mirror, err := url.Parse(mirrorURL)
	if err != nil || mirror.Host == "" {
		t.Fatalf("mirror URL %q: %v", mirrorURL, err)
	}
	examples, err := findUpward(hostsExamplesDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, registry := range registries {
		src := filepath.Join(examples, registry, "hosts.toml")
		template, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		rendered, err := renderHostsTOML(string(template), mirror)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if err := os.MkdirAll(filepath.Join(dir, registry), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, registry, "hosts.toml"), []byte(rendered), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// renderHostsTOML points the template's one mirror entry at mirror.
func renderHostsTOML(template string, mirror *url.URL) (string, error) {
	hosts := hostHeader.FindAllStringSubmatchIndex(template, -1)
	switch {
	case len(hosts) != 1:
		return "", fmt.Errorf("want exactly one [host.\"...\"] entry, found %d", len(hosts))
	case serverLine.MatchString(template):
		return "", fmt.Errorf("a server line would point containerd past the mirror; leave it out")
	case !capabilities.MatchString(template):
		return "", fmt.Errorf(`want capabilities = ["pull", "resolve"]`)
	}
	start, end := hosts[0][2], hosts[0][3]
	return template[:start] + mirror.Scheme + "://" + mirror.Host + template[end:], nil
}

// findUpward finds rel in the working directory or the nearest parent
// that has it, then likewise from this source file's directory.
func findUpward(rel string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			candidate := filepath.Join(dir, rel)
			if _, err := os.Stat(candidate); err == nil {
				return candidate, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%s not found above %s", rel, strings.Join(starts, " or "))
}
