package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/notify"
	"github.com/regmirror/regmirror/mirror"
)

// NotificationsConfig is the `notifications:` section: webhooks.
type NotificationsConfig struct {
	// Endpoints receive the events; none turns webhooks off.
	Endpoints []EndpointConfig `yaml:"endpoints"`
}

// EndpointConfig is one webhook receiver. Zero values mean the defaults.
type EndpointConfig struct {
	// Name labels the endpoint in metrics and logs; empty: its index.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// HeadersFile holds headers sent with every delivery, one
	// "Name: value" a line (an Authorization header, say): a file, so
	// that the config file holds no receiver's token.
	HeadersFile string `yaml:"headers_file"`
	// SecretFile holds the key every body is signed with (HMAC-SHA256);
	// a trailing newline is ignored.
	SecretFile string `yaml:"secret_file"`
	// Actions, when set, are the only actions sent (notify.Actions).
	Actions   []string      `yaml:"actions"`
	Timeout   time.Duration `yaml:"timeout"`
	Retries   Count         `yaml:"retries"`
	Backoff   time.Duration `yaml:"backoff"`
	QueueSize int           `yaml:"queue_size"`
}

func (c NotificationsConfig) validate() error {
	var errs []error
	names := map[string]bool{}
	for i, e := range c.Endpoints {
		at := func(key string) string { return fmt.Sprintf("notifications.endpoints[%d].%s", i, key) }
		if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, keyErrorf(at("url"), "notifications.endpoints[%d]: url must be an http:// or https:// URL", i))
		}
		if e.Name != "" && names[e.Name] {
			errs = append(errs, keyErrorf(at("name"), "notifications.endpoints[%d]: name %q is used twice", i, e.Name))
		}
		names[e.Name] = true
		for j, a := range e.Actions {
			if !slices.Contains(notify.Actions, a) {
				errs = append(errs, keyErrorf(fmt.Sprintf("notifications.endpoints[%d].actions[%d]", i, j),
					"notifications.endpoints[%d]: unknown action %q (known: %s)", i, a, strings.Join(notify.Actions, ", ")))
			}
		}
		for key, v := range map[string]int64{"timeout": int64(e.Timeout), "backoff": int64(e.Backoff), "queue_size": int64(e.QueueSize)} {
			if v < 0 {
				errs = append(errs, keyErrorf(at(key), "notifications.endpoints[%d]: %s must not be negative", i, key))
			}
		}
	}
	return errors.Join(errs...)
}

// endpoints reads the endpoints' files and converts them for notify.
func (c NotificationsConfig) endpoints() ([]notify.Endpoint, error) {
	out := make([]notify.Endpoint, 0, len(c.Endpoints))
	for i, e := range c.Endpoints {
		ep, err := e.endpoint(i)
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, nil
}

// fileErrors reports the endpoints' files that the daemon could not use,
// for config check.
func (c NotificationsConfig) fileErrors() []error {
	var errs []error
	for i, e := range c.Endpoints {
		if _, err := e.endpoint(i); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// endpoint reads the files of endpoints[i], e; errors name the files,
// never their contents.
func (e EndpointConfig) endpoint(i int) (notify.Endpoint, error) {
	ep := notify.Endpoint{Name: e.Name, URL: e.URL, Actions: e.Actions, Timeout: e.Timeout,
		Retries: int(e.Retries), Backoff: e.Backoff, QueueSize: e.QueueSize}
	at := func(key string) string { return fmt.Sprintf("notifications.endpoints[%d].%s", i, key) }
	if e.HeadersFile != "" {
		h, err := readHeadersFile(e.HeadersFile)
		if err != nil {
			return ep, &keyError{key: at("headers_file"), err: fmt.Errorf("%s: %w", at("headers_file"), err)}
		}
		ep.Headers = h
	}
	if e.SecretFile != "" {
		secret, err := os.ReadFile(e.SecretFile)
		if err != nil {
			return ep, &keyError{key: at("secret_file"), err: fmt.Errorf("%s: %w", at("secret_file"), err)}
		}
		if ep.Secret = bytes.TrimRight(secret, "\r\n"); len(ep.Secret) == 0 {
			return ep, keyErrorf(at("secret_file"), "%s: %s is empty", at("secret_file"), e.SecretFile)
		}
	}
	return ep, nil
}

// readHeadersFile reads "Name: value" lines; blank lines and lines
// starting with # are skipped. Errors name the line, never its value.
func readHeadersFile(path string) (http.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := http.Header{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%s:%d: not a \"Name: value\" header line", path, n)
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return h, nil
}

// newNotifier builds the webhooks of cfg for the daemon listening on
// listen; nil when none are configured, which every caller takes as
// "report nothing".
func newNotifier(cfg Config, listen string, reg prometheus.Registerer, log *slog.Logger) (*notify.Notifier, error) {
	if len(cfg.Notifications.Endpoints) == 0 {
		return nil, nil
	}
	eps, err := cfg.Notifications.endpoints()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return notify.New(eps, notify.Options{
		Source:     notify.Source{Addr: sourceAddr(host, listen), InstanceID: rand.Text()},
		Logger:     log,
		Registerer: reg,
	})
}

// sourceAddr is the mirror's address as events name it: the host name and
// the listener's port.
func sourceAddr(host, listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return listen
	}
	return net.JoinHostPort(host, port)
}

// mirrorEvents hands the mirror's events to the notifier.
type mirrorEvents struct{ n *notify.Notifier }

var (
	_ mirror.Events    = mirrorEvents{}
	_ prefetchFailures = (*notify.Notifier)(nil)
)

// Notify implements mirror.Events.
func (e mirrorEvents) Notify(ev mirror.Event) {
	e.n.Notify(notify.Event{
		Action: ev.Action,
		Target: notify.Target{MediaType: ev.MediaType, Digest: ev.Digest, Size: ev.Size,
			Repository: ev.Repository, URL: ev.URL, Tag: ev.Tag, Registry: ev.Registry},
		Request: notify.Request{ID: ev.Request.ID, Addr: ev.Request.Addr, Host: ev.Request.Host,
			Method: ev.Request.Method, UserAgent: ev.Request.UserAgent},
		Actor: notify.Actor{Name: ev.Actor},
	})
}

// mirrorEventsOf is the mirror's Events for n: nil without webhooks, so
// the mirror skips building events.
func mirrorEventsOf(n *notify.Notifier) mirror.Events {
	if n == nil {
		return nil
	}
	return mirrorEvents{n: n}
}

// reportEvictions is the eviction hook that tells n what left the cache.
func reportEvictions(n *notify.Notifier) func([]eviction.Candidate, []digest.Digest) {
	if n == nil {
		return nil
	}
	return func(victims []eviction.Candidate, removed []digest.Digest) {
		gone := make(map[digest.Digest]bool, len(removed))
		for _, d := range removed {
			gone[d] = true
		}
		for _, v := range victims {
			if !gone[v.Digest] {
				continue
			}
			// A manifest's candidate size is what it and its index rows
			// counted against the budget, not its length: leave it out.
			size := v.Size
			if v.Manifest {
				size = 0
			}
			n.Evicted(v.Digest, v.Manifest, size)
		}
	}
}

// breakerHook is the upstreams' BreakerChanged for n; nil without webhooks.
func breakerHook(n *notify.Notifier) func(host string, open bool) {
	if n == nil {
		return nil
	}
	return n.BreakerChanged
}
