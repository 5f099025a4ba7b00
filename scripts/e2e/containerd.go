package e2e

// Environment findings, from running Debian bookworm's containerd 1.6.20 as
// root inside `unshare --net --pid --mount`:
//
//   - containerd needs nothing but its config file: root, state and
//     grpc.address (and ttrpc.address, else it derives one beside the
//     socket) move everything it writes into the test's directory. The
//     "opt" plugin would still create /opt/containerd, so it is disabled,
//     along with CRI (no kubelet here) and the snapshotters this host
//     cannot run; startup to a listening socket takes about 100ms.
//   - `ctr images pull --hosts-dir DIR` reads DIR/<registry>/hosts.toml
//     exactly as the CRI plugin reads config_path. A [host."http://..."]
//     entry is spoken to in plain HTTP as written: no --plain-http needed.
//   - A mirror gets `?ns=<registry>` on every request: HEAD
//     /v2/library/node/manifests/10?ns=docker.io for docker.io/library/node:10.
//   - Leaving `server` out of hosts.toml does NOT stop the fallback: after
//     the mirror, containerd still tries the registry's default endpoint
//     (https://registry-1.docker.io for docker.io). Only the loopback-only
//     namespace makes that fallback fail, which is why a pull that succeeds
//     here proves the mirror served it.
//   - Unpacking uses the native snapshotter: plain directory copies work on
//     any backing filesystem, and the test images are small.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Snapshotter is the snapshotter Containerd.Ctr pulls unpack into.
const Snapshotter = "native"

// disabledContainerdPlugins are plugins a pull-only containerd does not
// need, or that would write outside its directory.
var disabledContainerdPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.internal.v1.opt",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.tracing.processor.v1.otlp",
}

// Containerd is a private containerd started by StartContainerd and
// stopped when the test that started it ends. Its methods are safe for
// concurrent use.
type Containerd struct {
	// Address is the daemon's gRPC socket, as given to `ctr --address`.
	Address string
	// LogPath is the file containerd logs to, at debug level.
	LogPath string

	dir     string
	ctr     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result; read only after exited is closed
}

// StartContainerd starts a containerd whose root, state and sockets live
// in a directory of its own, and waits until its socket accepts
// connections. A cleanup stops it, prints its log if the test failed, and
// removes the directory (unless E2E_KEEP=1).
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	daemon, err := lookProgram("E2E_CONTAINERD", "containerd", "/usr/bin/containerd")
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := lookProgram("E2E_CTR", "ctr", "/usr/bin/ctr")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): test names make paths too long for a unix socket.
	dir, err := os.MkdirTemp("", "e2e-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{
		Address: filepath.Join(dir, "containerd.sock"),
		LogPath: filepath.Join(dir, "containerd.log"),
		dir:     dir,
		ctr:     ctr,
		exited:  make(chan struct{}),
	}
	if err := c.start(daemon); err != nil {
		c.removeDir(t)
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cleanup(t) })
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	start := time.Now()
	if err := c.waitReady(ctx); err != nil {
		t.Fatalf("containerd did not start: %v", err)
	}
	t.Logf("containerd %s ready in %v (log %s)", c.Address, time.Since(start).Round(time.Millisecond), c.LogPath)
	return c
}

// config is containerd's whole configuration.
func (c *Containerd) config() string {
	quoted := make([]string, len(disabledContainerdPlugins))
	for i, p := range disabledContainerdPlugins {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "debug"
`, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), strings.Join(quoted, ", "),
		c.Address, c.Address+".ttrpc")
}

func (c *Containerd) start(daemon string) error {
	configPath := filepath.Join(c.dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(c.config()), 0o600); err != nil {
		return fmt.Errorf("write containerd config: %w", err)
	}
	logFile, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open containerd log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(daemon, "--config", configPath)
	cmd.Dir = c.dir
	cmd.Env = daemonEnv(c.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", daemon, err)
	}
	c.cmd = cmd
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return nil
}

// waitReady dials the socket until containerd accepts, exits, or ctx ends.
func (c *Containerd) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, "unix", c.Address)
		if err == nil {
			conn.Close()
			return nil
		}
		lastErr = err
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last dial: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// Ctr runs `ctr --address SOCKET args...` and returns its standard output
// without the trailing newline; a failure's error carries standard error.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.Address}, args...)...)
	cmd.Env = []string{"PATH=" + systemPath(), "HOME=" + c.dir}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out := strings.TrimSuffix(stdout.String(), "\n")
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ImageTarget returns the digest the image record ref points to, from
// `ctr images ls`.
func (c *Containerd) ImageTarget(ctx context.Context, ref string) (string, error) {
	out, err := c.Ctr(ctx, "images", "ls")
	if err != nil {
		return "", err
	}
	// REF TYPE DIGEST SIZE PLATFORMS LABELS
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("no image %s in `ctr images ls`:\n%s", ref, out)
}

func (c *Containerd) cleanup(t testing.TB) {
	t.Helper()
	select {
	case <-c.exited:
		t.Errorf("containerd exited before the test ended: %v", c.waitErr)
	default:
		if err := c.stop(); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		data, err := os.ReadFile(c.LogPath)
		if len(data) > logTailBytes {
			data = data[len(data)-logTailBytes:]
		}
		t.Logf("containerd log %s (last %d KiB), %v:\n%s", c.LogPath, logTailBytes>>10, err, data)
	}
	if os.Getenv("E2E_KEEP") == "1" {
		t.Logf("kept containerd directory %s", c.dir)
		return
	}
	c.removeDir(t)
}

// stop sends SIGTERM and waits; after stopTimeout it kills containerd's
// process group (it starts no shims for pulls, but would own them).
func (c *Containerd) stop() error {
	pid := c.cmd.Process.Pid
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop containerd: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-c.exited:
		// containerd exits with status 0 or by the SIGTERM it was sent.
		return nil
	case <-timer.C:
		syscall.Kill(-pid, syscall.SIGKILL)
		<-c.exited
		return fmt.Errorf("containerd did not stop within %v of SIGTERM; killed it", stopTimeout)
	}
}

func (c *Containerd) removeDir(t testing.TB) {
	t.Helper()
	if err := unmountUnder(c.dir); err != nil {
		t.Error(err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove containerd directory: %v", err)
	}
}
