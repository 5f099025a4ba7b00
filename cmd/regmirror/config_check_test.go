package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
)

// runExit runs the command line as main does and returns its exit status
// and what it printed.
func runExit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	appRuns.Lock()
	defer appRuns.Unlock()
	code = run(context.Background(), append([]string{"regmirror"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// A broken file: every problem is reported, each at its line, and the
// check fails with the configuration's exit status.
func TestConfigCheckReportsEveryProblemAtItsLine(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `listn: ":5000"
tls_cert: /etc/regmirror/cert.pem
upstreams:
  - host: docker.io
    url: ftp://registry-1.docker.io
    password: hunter2-secret
    tag_ttl: -1m
    allow: ["library/[a"]
  - host: docker.io
    retries: -1
    dial_timeout: soon
cache:
  max_size: 20GX
  high_watermark: 50%
  low_watermark: 60%
  pin: ["team/["]
miss_limits:
  total_rate: -1
hosted:
  htpasswd: /etc/regmirror/htpasswd
  permissions:
    - {repositories: ["team/*"], groups: [ops], actions: [pull]}
`)
	code, stdout, stderr := runExit(t, "config", "check", "--no-files", "--config", path)
	if code != exitConfig {
		t.Errorf("exit status %d, want %d (configuration error)", code, exitConfig)
	}
	if stdout != "" {
		t.Errorf("a failed check printed a configuration:\n%s", stdout)
	}
	want := []struct {
		line int
		text string
	}{
		{1, "field listn not found"},
		{2, "tls_cert and tls_key must be set together"},
		{4, "a password needs a username"}, // the entry: it has no username key
		{5, `url "ftp://registry-1.docker.io" must be an http:// or https:// URL`},
		{7, "tag_ttl must not be negative"},
		{8, `repository pattern "library/[a" is not a glob`},
		{9, `host "docker.io" is listed twice`},
		{10, "retries must not be negative"},
		{11, "time.Duration"},
		{13, `size "20GX": want a number of bytes, or a number and a unit`},
		{15, "watermarks must satisfy"},
		{16, `repository pattern "team/["`},
		{18, "total_rate is -1"},
		{22, `names group "ops", which hosted.groups does not define`},
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d problems reported, want %d:\n%s", len(lines), len(want), stderr)
	}
	for _, w := range want {
		prefix := fmt.Sprintf("regmirror: %s:%d: ", path, w.line)
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, prefix) && strings.Contains(l, w.text)
		}
		if !found {
			t.Errorf("no problem %q at line %d in:\n%s", w.text, w.line, stderr)
		}
	}
	if strings.Contains(stderr, "hunter2-secret") {
		t.Error("a password reached the report")
	}
}

// A valid file: the effective configuration is printed with the secrets
// redacted and the paths kept, and it is itself a configuration that
// loads to the same settings.
func TestConfigCheckPrintsTheEffectiveConfigurationRedacted(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "ghcr-token")
	if err := os.WriteFile(secretFile, []byte("file-secret-4d1e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, `listen: 127.0.0.1:5999
upstreams:
  - host: docker.io
    username: mirror-bot
    password: inline-secret-77ab
    tag_ttl: 10m
    stale_if_error: 0s
    allow: ["library/*"]
  - host: ghcr.io
    username: bot
    password_file: `+secretFile+`
cache:
  max_size: 1536MiB
  high_watermark: 95%
miss_limits:
  total_rate: 2.5
`)
	code, stdout, stderr := runExit(t, "config", "check", "--config", path, "--data-dir", "/srv/mirror")
	if code != exitOK {
		t.Fatalf("exit status %d:\n%s", code, stderr)
	}
	for _, secret := range []string{"inline-secret-77ab", "file-secret-4d1e"} {
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("the secret %q was printed:\n%s", secret, stdout)
		}
	}
	for _, want := range []string{"password: " + redacted, "password_file: " + secretFile, "data_dir: /srv/mirror",
		"url: https://registry-1.docker.io", "stale_if_error: 0s", "max_size: 1536MiB"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the effective configuration lacks %q:\n%s", want, stdout)
		}
	}

	// Printed back with the secret restored, it is the same configuration.
	again := writeConfig(t, strings.Replace(stdout, "password: "+redacted, "password: inline-secret-77ab", 1))
	first, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	first.DataDir = "/srv/mirror"
	second, err := loadConfig(again)
	if err != nil {
		t.Fatalf("the effective configuration does not load: %v\n%s", err, stdout)
	}
	second.path = first.path
	if a, b := first.withDefaults(), second.withDefaults(); !reflect.DeepEqual(a, b) {
		t.Errorf("the effective configuration loads as\n%+v\nwant\n%+v", b, a)
	}
}

// The files a configuration names are checked unless --no-files says
// they live on another host.
func TestConfigCheckOpensTheFilesItNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badCert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(badCert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, fmt.Sprintf(`tls_cert: %s
tls_key: %s
upstreams:
  - host: docker.io
    username: bot
    password_file: %s
    ca_file: %s
hosted:
  htpasswd: %s
`, badCert, badCert, filepath.Join(dir, "missing-token"), badCert, filepath.Join(dir, "missing-htpasswd")))
	code, _, stderr := runExit(t, "config", "check", "--config", path)
	if code != exitConfig {
		t.Errorf("exit status %d, want %d", code, exitConfig)
	}
	for _, want := range []string{path + ":1: tls_cert and tls_key:", path + ":6: upstreams[0] (docker.io): password_file: open " + dir,
		path + ":7: upstreams[0] (docker.io): ca_file: " + badCert + " holds no PEM certificate", path + ":9: hosted: open " + dir} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q in:\n%s", want, stderr)
		}
	}
	if code, _, stderr := runExit(t, "config", "check", "--no-files", "--quiet", "--config", path); code != exitOK || stderr != "" {
		t.Errorf("with --no-files: exit status %d, %s", code, stderr)
	}
}

// A check starts nothing: it passes while a daemon holds the listen
// address and the data directory's lock, and creates no data directory.
func TestConfigCheckStartsNothing(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{})
	dataDir := shortTempDir(t)
	url, _ := startDaemon(t, Config{DataDir: dataDir, Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL()}}}.withDefaults(), &logBuffer{})
	listen := strings.TrimPrefix(url, "http://")
	path := writeConfig(t, fmt.Sprintf("listen: %s\ndata_dir: %s\n", listen, dataDir))
	if code, _, stderr := runExit(t, "config", "check", "--quiet", "--config", path); code != exitOK {
		t.Fatalf("check beside a running daemon: exit status %d, %s", code, stderr)
	}
	// The address is still the daemon's: the check bound nothing.
	if ln, err := net.Listen("tcp", listen); err == nil {
		ln.Close()
		t.Fatalf("%s is free: the daemon is gone", listen)
	}

	fresh := filepath.Join(t.TempDir(), "not-yet")
	if code, _, stderr := runExit(t, "config", "check", "--quiet", "--data-dir", fresh); code != exitOK {
		t.Fatalf("check without a config file: exit status %d, %s", code, stderr)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("the check created the data directory: %v", err)
	}
}

// Each kind of failure has its own exit status, and a usage mistake a
// message that says what was wrong.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	broken := writeConfig(t, "cache:\n  max_size: lots\n")
	tests := []struct {
		name string
		args []string
		code int
		text string
	}{
		{"unknown command", []string{"serv"}, exitUsage, `unknown command "serv" (see 'regmirror --help')`},
		{"unknown subcommand", []string{"cache", "purge"}, exitUsage, `unknown command "purge" (see 'regmirror cache --help')`},
		{"unknown config subcommand", []string{"config", "lint"}, exitUsage, `unknown command "lint" (see 'regmirror config --help')`},
		{"unknown flag", []string{"serve", "--port", "5000"}, exitUsage, "flag provided but not defined: -port (see 'regmirror serve --help')"},
		{"bad duration", []string{"cache", "prune", "--older-than", "a week"}, exitUsage, `invalid value "a week" for flag -older-than`},
		{"bad size", []string{"cache", "prune", "--max-size", "20GX"}, exitUsage, `--max-size: size "20GX": want a number of bytes`},
		{"nothing to prune", []string{"cache", "prune"}, exitUsage, "say what to prune"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, exitUsage, "--log-level"},
		{"help on no topic", []string{"help", "serv"}, exitUsage, "No help topic"},
		{"bad config file", []string{"config", "check", "--config", broken}, exitConfig, broken + `:2: size "lots"`},
		{"missing config file", []string{"config", "check", "--config", broken + ".missing"}, exitConfig, "no such file"},
		{"serve with a bad config file", []string{"serve", "--config", broken}, exitConfig, broken + `:2: size "lots"`},
		{"cache command with a bad config file", []string{"cache", "stats", "--config", broken}, exitConfig, broken + ":2:"},
		{"no cache", []string{"cache", "stats", "--data-dir", filepath.Join(t.TempDir(), "none")}, exitFailure, "no cache in"},
		{"version", []string{"version"}, exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runExit(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.text) {
				t.Errorf("regmirror %s: exit status %d, %q; want %d and %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.text)
			}
		})
	}
}

// cache verify that finds a corrupt blob exits with its own status.
func TestCacheVerifyCorruptionExitCode(t *testing.T) {
	t.Parallel()
	hub := registrytest.New(t, registrytest.Options{})
	img, err := hub.PushImage("library/alpine", "1", registrytest.ImageOptions{Layers: 1, LayerSize: 4096, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	url, stop := startDaemon(t, Config{DataDir: dir, Upstreams: []UpstreamConfig{{Host: "docker.io", URL: hub.URL()}}}.withDefaults(), &logBuffer{})
	pullImage(t, url, "library/alpine", "1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runExit(t, "cache", "verify", "--data-dir", dir); code != exitOK {
		t.Fatalf("verify of a sound cache: exit status %d, %s", code, stderr)
	}
	// One byte flipped, the size kept: only re-hashing finds it.
	hex := img.Layers[0].Digest.Encoded()
	blob := filepath.Join(dir, "blobs", "sha256", hex[:2], hex)
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blob, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runExit(t, "cache", "verify", "--data-dir", dir)
	if code != exitCorrupt || !strings.Contains(stderr, "1 corrupt blobs found") {
		t.Errorf("verify of a corrupt cache: exit status %d, %q; want %d", code, stderr, exitCorrupt)
	}
}

// skipMarker, on the line before a fenced yaml block of the docs, says the
// block is no regmirror config file (a Kubernetes manifest, a kind
// cluster) and why: every other yaml block must pass `config check`.
const skipMarker = "<!-- config-check: skip:"

// Every example config in the docs passes `config check`. Files they name
// (/etc/regmirror/hub-token) are illustrations: --no-files.
func TestDocExampleConfigsPass(t *testing.T) {
	t.Parallel()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, doc := range append(docs, "../../README.md") {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range yamlBlocks(string(data)) {
			name := fmt.Sprintf("%s:%d", filepath.Base(doc), b.line)
			if b.skip {
				continue
			}
			checked++
			path := writeConfig(t, b.text)
			if code, _, stderr := runExit(t, "config", "check", "--quiet", "--no-files", "--config", path); code != exitOK {
				t.Errorf("the yaml block at %s fails config check (exit status %d); if it is no regmirror config, "+
					"put %q on the line before it:\n%s\n%s", name, code, skipMarker+" WHY -->", b.text, stderr)
			}
		}
	}
	if checked < 5 {
		t.Errorf("only %d example configs found in the docs", checked)
	}
}

// yamlBlock is a fenced yaml block of a Markdown file.
type yamlBlock struct {
	line int // of the opening fence
	text string
	skip bool // marked as no regmirror config
}

// yamlBlocks finds the fenced yaml blocks of a Markdown text, indented
// ones (in a list) too.
func yamlBlocks(markdown string) []yamlBlock {
	var blocks []yamlBlock
	lines := strings.Split(markdown, "\n")
	for i := 0; i < len(lines); i++ {
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		if strings.TrimSpace(lines[i]) != "```yaml" {
			continue
		}
		b := yamlBlock{line: i + 1, skip: i > 0 && strings.HasPrefix(strings.TrimSpace(lines[i-1]), skipMarker)}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], strings.Repeat(" ", indent)))
		}
		b.text = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, b)
	}
	return blocks
}
