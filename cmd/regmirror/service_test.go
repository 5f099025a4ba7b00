package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const serviceUnit = "../../scripts/regmirror.service"

// The systemd unit checks the config file before it sends SIGHUP, with the
// daemon's own settings, so that `systemctl reload` fails on a broken file;
// and systemd-analyze finds nothing to say about the unit.
func TestSystemdUnitChecksConfigBeforeReload(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(serviceUnit)
	if err != nil {
		t.Fatal(err)
	}
	var start string
	var reload []string
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecReload="); ok {
			reload = append(reload, v)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart="); ok {
			start = v
		}
	}
	// systemd runs ExecReload= commands in order and stops at the first that fails.
	if len(reload) != 2 || !strings.HasPrefix(reload[0], "/usr/local/bin/regmirror config check ") || reload[1] != "/bin/kill -HUP $MAINPID" {
		t.Fatalf("ExecReload = %q; want the config check, then the SIGHUP", reload)
	}
	_, startFlags, _ := strings.Cut(start, " serve ")
	if !strings.HasSuffix(reload[0], " "+startFlags) {
		t.Errorf("the check (%q) does not use ExecStart's flags %q", reload[0], startFlags)
	}

	bin := filepath.Join(t.TempDir(), "regmirror")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	check := strings.Fields(strings.Replace(reload[0], "/usr/local/bin/regmirror", bin, 1))
	runCheck := func(config string) (int, string) {
		cmd := exec.Command(check[0], check[1:]...)
		cmd.Env = append(os.Environ(), "REGMIRROR_CONFIG="+config) // as regmirror.env sets it
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String()
	}
	good := writeConfig(t, "upstreams:\n  - host: docker.io\n    tag_ttl: 10m\n")
	if code, out := runCheck(good); code != 0 || out != "" {
		t.Errorf("the reload check of a good file: exit status %d, %q; want 0 and silence", code, out)
	}
	broken := writeConfig(t, "upstreams:\n  - host: docker.io\n    tag_ttl: 10 minutes\n")
	if code, out := runCheck(broken); code != exitConfig || !strings.Contains(out, broken+":3:") {
		t.Errorf("the reload check of a broken file: exit status %d, %q; want %d and its line", code, out, exitConfig)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is missing: run scripts/install-deps.sh (%v)", err)
	}
	unit := filepath.Join(t.TempDir(), "regmirror.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte("/usr/local/bin/regmirror"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// It warns (unknown keys, bad values) on its output and fails only on
	// worse: both count.
	if out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
