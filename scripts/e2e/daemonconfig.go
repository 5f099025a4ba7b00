package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
)

// daemonTemplateName is the committed example configuration, at the
// repository root, that every e2e dockerd is started from.
const daemonTemplateName = "daemon.json.example"

// mirrorsKey is the daemon.json option that lists Docker Hub mirrors.
const mirrorsKey = "registry-mirrors"

// renderDaemonConfig turns the daemon.json template into the configuration a
// test's dockerd runs with: every registry mirror is re-pointed at mirror
// (scheme and host:port; a path in the template is kept), and the harness's
// private settings are merged in.
//
// It refuses a template that has no mirror, since then the test would not
// prove the example works, and a template that sets an option the harness
// owns: dockerd will not start when a flag and the config file set the same
// option, and a template silently overriding a private setting would break
// the test's isolation.
func renderDaemonConfig(template []byte, mirror *url.URL, flagOptions []string, private map[string]any) ([]byte, error) {
	if err := validateMirrorURL(mirror); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(template))
	dec.UseNumber() // round-trip numbers such as max-concurrent-downloads unchanged
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parse daemon config template: %w", err)
	}
	for option := range cfg {
		if slices.Contains(flagOptions, option) {
			return nil, fmt.Errorf("daemon config template sets %q, which the e2e harness passes as a flag", option)
		}
		if _, ok := private[option]; ok {
			return nil, fmt.Errorf("daemon config template sets %q, which the e2e harness keeps private to each test", option)
		}
	}
	mirrors, err := repointMirrors(cfg[mirrorsKey], mirror)
	if err != nil {
		return nil, err
	}
	cfg[mirrorsKey] = mirrors
	for option, value := range private {
		cfg[option] = value
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode daemon config: %w", err)
	}
	return append(out, '\n'), nil
}

// validateMirrorURL accepts what dockerd accepts as a mirror and the
// harness can substitute: an http(s) base URL with no path of its own.
func validateMirrorURL(mirror *url.URL) error {
	switch {
	case mirror == nil:
		return errors.New("no mirror URL")
	case mirror.Scheme != "http" && mirror.Scheme != "https":
		return fmt.Errorf("mirror URL %q: scheme must be http or https", mirror.Redacted())
	case mirror.Host == "":
		return fmt.Errorf("mirror URL %q: no host", mirror.Redacted())
	case mirror.Path != "" && mirror.Path != "/":
		return fmt.Errorf("mirror URL %q: a path belongs in %s, not in the test's mirror URL", mirror.Redacted(), daemonTemplateName)
	}
	return nil
}

// repointMirrors rewrites each configured mirror to the test's scheme and
// host:port, keeping the rest of the template's URL.
func repointMirrors(value any, mirror *url.URL) ([]string, error) {
	list, ok := value.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("daemon config template has no %q list: the e2e test must exercise it", mirrorsKey)
	}
	mirrors := make([]string, 0, len(list))
	for _, entry := range list {
		s, ok := entry.(string)
		if !ok {
			return nil, fmt.Errorf("daemon config template: %q entry %v is not a string", mirrorsKey, entry)
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("daemon config template: %q entry: %w", mirrorsKey, err)
		}
		u.Scheme, u.Host = mirror.Scheme, mirror.Host
		mirrors = append(mirrors, u.String())
	}
	return mirrors, nil
}

// findDaemonTemplate locates daemon.json.example: $E2E_DAEMON_JSON, else the
// first directory holding it on the way up from the working directory (the
// package directory under `go test`, usually the repo root otherwise), else
// the repo root this file was compiled from.
func findDaemonTemplate() (string, error) {
	if p := os.Getenv("E2E_DAEMON_JSON"); p != "" {
		return p, nil
	}
	p, err := findUpward(daemonTemplateName)
	if err != nil {
		return "", fmt.Errorf("%w; set E2E_DAEMON_JSON", err)
	}
	return p, nil
}
