package e2e

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestDescendantsAndKillAll(t *testing.T) {
	t.Parallel()
	// A shell whose own child is sleep: a two-level tree like dockerd's.
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var tree []process // sh and its children, nothing else of this process's
	for !slices.ContainsFunc(tree, func(p process) bool { return p.comm == "sleep" }) {
		tree = descendants(cmd.Process.Pid) // sh may not have forked sleep yet
		select {
		case err := <-waited:
			t.Fatalf("sh exited early: %v", err)
		default:
		}
	}
	ours := descendants(os.Getpid())
	i := slices.IndexFunc(ours, func(p process) bool { return p.pid == cmd.Process.Pid })
	if i < 0 {
		t.Fatalf("descendants of the test process lack sh[%d]", cmd.Process.Pid)
	}
	// Parent first, as descendants orders them: killing sleep first would
	// let sh exit by itself before killAll reached it.
	tree = append([]process{ours[i]}, tree...)
	if killed := killAll(tree); len(killed) < 2 {
		t.Errorf("killAll killed %v, want sh and sleep", killed)
	}
	<-waited
	// SIGKILL takes effect asynchronously, and the orphaned sleep must then
	// be reaped by init: poll until both are gone.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for _, p := range tree {
		for p.alive() {
			select {
			case <-deadline:
				t.Fatalf("%v is still alive 10s after killAll", p)
			case <-tick.C:
			}
		}
	}
}
