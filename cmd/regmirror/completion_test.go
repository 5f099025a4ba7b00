package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The bash script, sourced in a real bash, completes commands and flags
// through the binary's completion hook, and never runs a command while
// completing. (urfave/cli's hook reads os.Args, so it is tested with a
// built binary rather than in-process.)
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "regmirror"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Should a completion ever run a command, it fails at once and leaves
	// a data directory behind.
	dataDir := filepath.Join(t.TempDir(), "data")
	script := `
source <(regmirror completion bash)
complete_words() {
	COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
	_regmirror_complete
	echo "${COMPREPLY[*]}"
}
complete_words regmirror ""
complete_words regmirror ca
complete_words regmirror cache ""
complete_words regmirror serve --
complete_words regmirror serve --met
complete_words regmirror serve -- ""
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"REGMIRROR_LISTEN=256.0.0.1:0", "REGMIRROR_DATA_DIR="+dataDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := []struct{ has, hasNot string }{
		{has: "serve cache"},                          // regmirror <TAB>: each of these words
		{has: "cache", hasNot: "serve"},               // regmirror ca<TAB>
		{has: "stats prune verify"},                   // regmirror cache <TAB>
		{has: "--listen", hasNot: "serve"},            // regmirror serve --<TAB>
		{has: "--metrics-listen", hasNot: "--listen"}, // regmirror serve --met<TAB>
		{hasNot: "-"},                                 // regmirror serve -- <TAB>: nothing to offer
	}
	if len(lines) != len(want) {
		t.Fatalf("bash printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		offered := strings.Fields(lines[i])
		hasAll := !slices.ContainsFunc(strings.Fields(w.has), func(word string) bool { return !slices.Contains(offered, word) })
		if !hasAll || (w.hasNot != "" && strings.Contains(lines[i], w.hasNot)) {
			t.Errorf("completion %d = %q, want it to contain %q and not %q", i, lines[i], w.has, w.hasNot)
		}
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Error("a completion ran the daemon")
	}
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh"} {
		t.Run(shell, func(t *testing.T) {
			t.Parallel()
			out, err := runApp(t, "completion", shell)
			if err != nil || !strings.Contains(out, "--generate-bash-completion") {
				t.Fatalf("completion %s = %q, %v", shell, out, err)
			}
			if _, err := exec.LookPath(shell); err != nil {
				return // the syntax check needs the shell
			}
			check := exec.Command(shell, "-n")
			check.Stdin = strings.NewReader(out)
			if msg, err := check.CombinedOutput(); err != nil {
				t.Fatalf("%s -n rejects the script: %v\n%s", shell, err, msg)
			}
		})
	}
	if _, err := runApp(t, "completion", "fish"); err == nil {
		t.Error("completion fish succeeded; only bash and zsh are supported")
	}
}

// runApp runs the CLI in-process and returns what it printed.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	err := runAppLocked(t.Context(), app, append([]string{"regmirror"}, args...))
	return out.String(), err
}
