package e2e

// Environment findings, from running Debian bookworm's docker.io 20.10.24
// (containerd 1.6.20, runc 1.1.5) as root in a VM with cgroup v1:
//
//   - dockerd starts inside `unshare --net` (and --pid --mount) with no
//     special privileges beyond root: no AppArmor profile is loaded (the
//     kernel has none enabled), seccomp only matters for containers, and
//     cgroups are only touched when a container runs. Startup to a working
//     API takes about half a second.
//   - Every path dockerd writes is moved into the test's directory by flags:
//     --data-root, --exec-root, --pidfile, --host. The containerd that
//     dockerd launches itself ("managed" containerd) follows them: its
//     socket and state live under <exec-root>/containerd and its root under
//     <data-root>/containerd/daemon, so two private dockerds, or one beside
//     the system's, never share a containerd. No --containerd-namespace
//     is needed for that.
//   - One write escapes those flags: dockerd < 23 creates its libtrust
//     identity at /etc/docker/key.json. There is no command-line flag for
//     it, only the daemon.json option "deprecated-key-path", so the harness
//     adds that to the generated config.
//   - --config-file replaces /etc/docker/daemon.json, so the host's own
//     config cannot leak in. dockerd refuses to start when a flag and the
//     file set the same option, hence the mirror is set only in the file
//     (from daemon.json.example) and never with --registry-mirror.
//   - --bridge=none --iptables=false --ip6tables=false: a namespace with only
//     loopback has no use for docker0 or NAT rules, and creating them would
//     fail or touch the host's firewall when run outside a namespace.
//   - --storage-driver=vfs works on any backing filesystem (overlay-on-overlay
//     in CI containers included) and the test images are a few KiB.
//   - 127.0.0.0/8 is an insecure registry by default, so a plain-http mirror
//     on 127.0.0.1 needs no "insecure-registries".
//   - dockerd reads HTTP(S)_PROXY from its environment for registry traffic,
//     so it runs with a fixed, minimal environment.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds dockerd's start until its API answers.
	startTimeout = 60 * time.Second
	// stopTimeout is how long dockerd gets to shut down after SIGTERM
	// before it and its children are killed.
	stopTimeout = 20 * time.Second
	// logTailBytes is how much of dockerd's log a failed test prints.
	logTailBytes = 32 << 10
	// longestSocketSuffix is the deepest unix socket dockerd's tree creates
	// under the test directory; socket paths are limited to 107 bytes.
	longestSocketSuffix = "/exec/containerd/containerd.sock.ttrpc"
)

// dockerdFlagOptions are the daemon.json options that StartDockerd sets as
// flags, so a daemon config template must not set them.
var dockerdFlagOptions = []string{
	"data-root", "exec-root", "pidfile", "hosts", "bridge",
	"iptables", "ip6tables", "storage-driver", "debug",
}

// Dockerd is a private Docker daemon started by StartDockerd and stopped,
// with its managed containerd, when the test that started it ends. Its
// methods are safe for concurrent use.
type Dockerd struct {
	// Host is the daemon's API address, as given to `docker --host`.
	Host string
	// LogPath is the file dockerd and its containerd log to, at debug level.
	LogPath string
	// StartupTime is how long dockerd took from exec to answering its API.
	StartupTime time.Duration

	dir       string // holds everything the daemon and CLI write
	socket    string
	cli       string
	cliConfig string // DOCKER_CONFIG for CLI commands
	cmd       *exec.Cmd
	startedAt time.Time
	children  []process     // dockerd's process tree once ready, managed containerd included
	exited    chan struct{} // closed once cmd.Wait has returned
	waitErr   error         // cmd.Wait's result; read only after exited is closed
}

// StartDockerd starts a private dockerd whose only Docker Hub mirror is
// mirrorURL (an http or https base URL such as "http://127.0.0.1:41234"),
// configured from daemon.json.example, and waits until its API answers. It
// registers a cleanup that stops the daemon and prints the tail of its log
// if the test failed. It fails the test if the daemon does not come up.
func StartDockerd(t testing.TB, mirrorURL string) *Dockerd {
	t.Helper()
	mirror, err := url.Parse(mirrorURL)
	if err != nil {
		t.Fatalf("mirror URL: %v", err)
	}
	bins, err := findBinaries()
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDockerd(bins)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.writeConfig(mirror, bins); err != nil {
		d.removeDir(t)
		t.Fatal(err)
	}
	if err := d.start(bins); err != nil {
		d.removeDir(t)
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cleanup(t) })

	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	if err := d.waitReady(ctx); err != nil {
		t.Fatalf("dockerd did not start: %v", err)
	}
	d.StartupTime = time.Since(d.startedAt)
	d.children = descendants(d.cmd.Process.Pid)
	if err := d.checkMirrors(ctx, mirror); err != nil {
		t.Fatal(err)
	}
	t.Logf("dockerd %s ready in %v (log %s)", d.Host, d.StartupTime.Round(time.Millisecond), d.LogPath)
	return d
}

// newDockerd makes the daemon's directory. It is deliberately not
// t.TempDir(): test names make those paths long, and dockerd's deepest unix
// socket must fit in 107 bytes.
func newDockerd(bins binaries) (*Dockerd, error) {
	dir, err := os.MkdirTemp("", "e2e-dockerd-")
	if err != nil {
		return nil, fmt.Errorf("make dockerd directory: %w", err)
	}
	if n := len(dir + longestSocketSuffix); n > 107 {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dockerd directory %s makes socket paths of %d bytes, over the 107-byte limit: set a shorter TMPDIR", dir, n)
	}
	d := &Dockerd{
		dir:       dir,
		socket:    filepath.Join(dir, "docker.sock"),
		LogPath:   filepath.Join(dir, "dockerd.log"),
		cli:       bins.cli,
		cliConfig: filepath.Join(dir, "cli"),
		exited:    make(chan struct{}),
	}
	d.Host = "unix://" + d.socket
	if err := os.Mkdir(d.cliConfig, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("make docker CLI config directory: %w", err)
	}
	return d, nil
}

func (d *Dockerd) configPath() string { return filepath.Join(d.dir, "daemon.json") }

// writeConfig renders daemon.json.example for this daemon.
func (d *Dockerd) writeConfig(mirror *url.URL, bins binaries) error {
	templatePath, err := findDaemonTemplate()
	if err != nil {
		return err
	}
	template, err := os.ReadFile(templatePath)
	if err != nil {
		return fmt.Errorf("read daemon config template: %w", err)
	}
	private := map[string]any{}
	if bins.dockerdMajor < 23 {
		private["deprecated-key-path"] = filepath.Join(d.dir, "key.json")
	}
	config, err := renderDaemonConfig(template, mirror, dockerdFlagOptions, private)
	if err != nil {
		return fmt.Errorf("%s: %w", templatePath, err)
	}
	if err := os.WriteFile(d.configPath(), config, 0o600); err != nil {
		return fmt.Errorf("write daemon config: %w", err)
	}
	return nil
}

// args are dockerd's flags; each sets one of dockerdFlagOptions.
func (d *Dockerd) args(bins binaries) []string {
	args := []string{
		"--config-file=" + d.configPath(),
		"--data-root=" + filepath.Join(d.dir, "data"),
		"--exec-root=" + filepath.Join(d.dir, "exec"),
		"--pidfile=" + filepath.Join(d.dir, "dockerd.pid"),
		"--host=" + d.Host,
		"--bridge=none",
		"--iptables=false",
		"--storage-driver=vfs",
		"--debug", // logs each registry request dockerd makes: the first clue when a pull fails
	}
	if bins.ip6tables {
		args = append(args, "--ip6tables=false")
	}
	return args
}

// start execs dockerd in its own process group, so that stopping it can
// reach every process it spawned.
func (d *Dockerd) start(bins binaries) error {
	logFile, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open dockerd log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bins.dockerd, d.args(bins)...)
	cmd.Dir = d.dir
	cmd.Env = daemonEnv(d.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without running cleanups, take dockerd
		// down too rather than leaving it holding the test's directory.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bins.dockerd, err)
	}
	d.cmd, d.startedAt = cmd, time.Now()
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	return nil
}

// daemonEnv is dockerd's whole environment: PATH to find containerd, runc
// and docker-init, and nothing that could redirect registry traffic
// (HTTP_PROXY and friends) or reach a host daemon (DOCKER_HOST).
func daemonEnv(home string) []string {
	return []string{"PATH=" + systemPath(), "HOME=" + home}
}

// systemPath is $PATH with the standard system directories appended, since
// sudo and CI runners often drop the sbin directories root needs.
func systemPath() string {
	const std = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if p := os.Getenv("PATH"); p != "" {
		return p + ":" + std
	}
	return std
}

// waitReady polls the daemon's /_ping until it answers, the daemon exits,
// or ctx ends.
func (d *Dockerd) waitReady(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", d.socket)
		},
	}}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = ping(ctx, client); lastErr == nil {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("dockerd exited: %v", d.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last ping: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

func ping(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dockerd/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/_ping: %s", resp.Status)
	}
	return nil
}

// checkMirrors confirms through the CLI that the daemon took its mirror from
// the generated config: the CLI works, and the config file was applied.
func (d *Dockerd) checkMirrors(ctx context.Context, mirror *url.URL) error {
	out, err := d.Docker(ctx, "info", "--format", "{{json .RegistryConfig.Mirrors}}")
	if err != nil {
		return err
	}
	var mirrors []string
	if err := json.Unmarshal([]byte(out), &mirrors); err != nil {
		return fmt.Errorf("docker info: registry mirrors %q: %w", out, err)
	}
	for _, m := range mirrors {
		if u, err := url.Parse(m); err == nil && u.Scheme == mirror.Scheme && u.Host == mirror.Host {
			return nil
		}
	}
	return fmt.Errorf("dockerd's registry mirrors are %v, want one at %s://%s", mirrors, mirror.Scheme, mirror.Host)
}

// Docker runs the docker CLI against this daemon with a private
// DOCKER_CONFIG and returns its standard output without the trailing
// newline. A failure's error carries the command's standard error.
func (d *Dockerd) Docker(ctx context.Context, args ...string) (string, error) {
	return d.DockerInput(ctx, nil, args...)
}

// DockerInput is Docker with stdin connected to the command, as for
// `docker login --password-stdin`.
func (d *Dockerd) DockerInput(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.cli, append([]string{"--host", d.Host}, args...)...)
	cmd.Env = []string{"PATH=" + systemPath(), "HOME=" + d.dir, "DOCKER_CONFIG=" + d.cliConfig}
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // don't hang on a pipe held open after ctx kills the CLI
	err := cmd.Run()
	out := strings.TrimSuffix(stdout.String(), "\n")
	if err != nil {
		select {
		case <-d.exited:
			err = fmt.Errorf("%w; dockerd is no longer running: %v", err, d.waitErr)
		default:
		}
		return out, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// cleanup stops the daemon, shows its log if the test failed, and removes
// its directory unless E2E_KEEP=1.
func (d *Dockerd) cleanup(t testing.TB) {
	t.Helper()
	select {
	case <-d.exited:
		t.Errorf("dockerd exited before the test ended: %v", d.waitErr)
		if survivors := killAll(d.children); len(survivors) > 0 {
			t.Logf("killed processes dockerd left behind: %v", survivors)
		}
	default:
		start := time.Now()
		if err := d.stop(); err != nil {
			t.Error(err)
		}
		t.Logf("dockerd stopped in %v", time.Since(start).Round(time.Millisecond))
	}
	if t.Failed() {
		t.Logf("dockerd log %s, last %d KiB without startup noise:\n%s", d.LogPath, logTailBytes>>10, d.logTail())
	}
	if os.Getenv("E2E_KEEP") == "1" {
		t.Logf("kept dockerd directory %s", d.dir)
		return
	}
	d.removeDir(t)
}

// stop sends dockerd SIGTERM and waits for a graceful shutdown, which also
// stops its managed containerd. If that takes too long it SIGKILLs dockerd's
// process group, then any process that was in dockerd's tree: the managed
// containerd runs in a process group of its own.
func (d *Dockerd) stop() error {
	pid := d.cmd.Process.Pid
	tree := append(descendants(pid), d.children...)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop dockerd: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	var stopErr error
	select {
	case <-d.exited:
		if d.waitErr != nil {
			stopErr = fmt.Errorf("dockerd shut down with %v", d.waitErr)
		}
	case <-timer.C:
		stopErr = fmt.Errorf("dockerd did not stop within %v of SIGTERM; killed it", stopTimeout)
		syscall.Kill(-pid, syscall.SIGKILL) // dockerd leads its group (Setpgid)
		<-d.exited
	}
	if survivors := killAll(tree); len(survivors) > 0 {
		stopErr = errors.Join(stopErr, fmt.Errorf("killed processes dockerd left behind: %v", survivors))
	}
	return stopErr
}

// logNoise marks the debug-level startup lines that never explain a
// failure: gRPC connection chatter, containerd plugin loading, API routes.
var logNoise = []string{"module=grpc", `msg="loading plugin`, `msg="Registering `}

// logTail returns the end of dockerd's log without logNoise.
func (d *Dockerd) logTail() string {
	data, err := os.ReadFile(d.LogPath)
	if err != nil {
		return err.Error()
	}
	var kept []string
	for _, line := range strings.Split(string(data), "\n") {
		if !slices.ContainsFunc(logNoise, func(noise string) bool { return strings.Contains(line, noise) }) {
			kept = append(kept, line)
		}
	}
	text := strings.Join(kept, "\n")
	if len(text) > logTailBytes {
		text = "…" + text[len(text)-logTailBytes:]
	}
	return text
}

func (d *Dockerd) removeDir(t testing.TB) {
	t.Helper()
	if err := unmountUnder(d.dir); err != nil {
		t.Error(err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("remove dockerd directory: %v", err)
	}
}
