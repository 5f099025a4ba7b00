package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The log section of the file sets the level and format; the flags
// override it; a value that does not parse is a problem at its line.
func TestLogSettingsInTheConfigFile(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "listen: :5000\nlog:\n  level: debug\n  format: json\n")
	tests := []struct {
		name       string
		args       []string
		wantLevel  string
		wantFormat string
	}{
		{"from the file", nil, "level: debug", "format: json"},
		{"a flag wins", []string{"--log-level", "warn"}, "level: warn", "format: json"},
		{"both flags win", []string{"--log-level", "error", "--log-format", "text"}, "level: error", "format: text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"config", "check", "--no-files", "--config", path}, tt.args...)
			code, stdout, stderr := runExit(t, args...)
			if code != exitOK {
				t.Fatalf("exit status %d: %s", code, stderr)
			}
			if want := "log:\n  " + tt.wantLevel + "\n  " + tt.wantFormat + "\n"; !strings.Contains(stdout, want) {
				t.Errorf("effective configuration has no %q:\n%s", want, stdout)
			}
		})
	}

	bad := writeConfig(t, "log:\n  level: loud\n  format: xml\n")
	code, _, stderr := runExit(t, "config", "check", "--no-files", "--config", bad)
	if code != exitConfig {
		t.Errorf("exit status %d, want %d", code, exitConfig)
	}
	for _, want := range []string{bad + `:2: log.level: "loud" is not a level`, bad + `:3: log.format: "xml" is neither text nor json`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q in:\n%s", want, stderr)
		}
	}
}

// serve logs as the file says when no flag says otherwise.
func TestServeLogsInTheFormatOfTheFile(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: %s\nlog:\n  format: json\n  level: warn\n",
		filepath.Join(t.TempDir(), "data")))
	var logs logBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		appRuns.Lock()
		defer appRuns.Unlock()
		done <- run(ctx, []string{"regmirror", "serve", "--config", path}, &logs, &logs)
	}()
	// No budget is set, which the daemon warns about at startup.
	for !strings.Contains(logs.String(), "max_size") {
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve ended with %d before it logged:\n%s", code, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if entry["level"] == "INFO" {
			t.Errorf("an info line at level warn: %q", line)
		}
	}
}
