package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/regmirror/regmirror/eviction"
	"github.com/regmirror/regmirror/internal/notify"
	"github.com/regmirror/regmirror/internal/repoglob"
)

// Config is the daemon's configuration file. Its zero value, like the zero
// value of every field, means the defaults.
type Config struct {
	// path is the file the config was read from; empty without one.
	path string

	// Listen is the address of the registry API, e.g. ":5000".
	Listen string `yaml:"listen"`
	// DataDir holds the cache: blob files and the index.
	DataDir string `yaml:"data_dir"`
	// TLSCert and TLSKey, when both set, make the listener serve HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MetricsListen, when set, is a second address serving /metrics,
	// /healthz and /readyz (never the registry API or the status page),
	// e.g. "127.0.0.1:9090" for a scraper on a private network.
	MetricsListen string `yaml:"metrics_listen"`
	// Upstreams are the registries mirrored with settings of their own;
	// none means Docker Hub with the defaults. The well-known public
	// registries (wellKnownRegistries) are mirrored too, listed or not.
	Upstreams []UpstreamConfig `yaml:"upstreams"`
	// ListedUpstreamsOnly mirrors only the registries in Upstreams, not
	// the well-known public ones that are not listed.
	ListedUpstreamsOnly bool `yaml:"listed_upstreams_only"`
	// AllowAnyUpstream mirrors any other registry a client names (with ns
	// or a host prefix): over https, anonymously (never with credentials
	// from any source), and only at public addresses (a client must not
	// reach the mirror's private network).
	AllowAnyUpstream bool `yaml:"allow_any_upstream"`
	// Cache is the cache's size budget and what eviction must spare.
	Cache CacheConfig `yaml:"cache"`
	// Hosted turns on repositories that clients push to.
	Hosted HostedConfig `yaml:"hosted"`
	// Auth says where users come from beside hosted.htpasswd: LDAP.
	Auth AuthConfig `yaml:"auth"`
	// MissLimits bound the requests clients make the mirror pass upstream.
	MissLimits MissLimitsConfig `yaml:"miss_limits"`
	// TrustedProxies are the reverse proxies (CIDRs or addresses) whose
	// X-Forwarded-For and X-Forwarded-Proto are believed; from any other
	// peer those headers are dropped.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Connections bounds what clients may hold open.
	Connections ConnectionsConfig `yaml:"connections"`
	// Status says who may see the status page in full.
	Status StatusConfig `yaml:"status"`
	// Prefetch lists images fetched ahead of any client, and pinned.
	Prefetch PrefetchConfig `yaml:"prefetch"`
	// Notifications are webhooks: events POSTed to receivers.
	Notifications NotificationsConfig `yaml:"notifications"`
	// Log is how the daemon logs: level and format.
	Log LogConfig `yaml:"log"`
	// Cluster makes this daemon one of several replicas that fetch each
	// blob from the upstream once between them.
	Cluster ClusterConfig `yaml:"cluster"`
	// Storage adds a bucket the replicas share behind the data directory.
	Storage StorageConfig `yaml:"storage"`

	// notifier is wiring, not configuration: the daemon's webhooks (nil
	// without any), which the upstreams' breakers and eviction report to.
	notifier *notify.Notifier
}

// MissLimitsConfig is the `miss_limits:` section: token buckets bounding
// the requests the cache cannot answer, per client address and in all, so
// that clients inventing names cannot burn the mirror's upstream quota.
// Zero values mean the defaults.
type MissLimitsConfig struct {
	PerClientRate  float64 `yaml:"per_client_rate"`
	PerClientBurst int     `yaml:"per_client_burst"`
	TotalRate      float64 `yaml:"total_rate"`
	TotalBurst     int     `yaml:"total_burst"`
}

func (c MissLimitsConfig) validate() error {
	var errs []error
	for key, v := range map[string]float64{
		"per_client_rate": c.PerClientRate, "per_client_burst": float64(c.PerClientBurst),
		"total_rate": c.TotalRate, "total_burst": float64(c.TotalBurst),
	} {
		if v < 0 {
			errs = append(errs, keyErrorf("miss_limits."+key, "miss_limits: rates and bursts must not be negative: %s is %v", key, v))
		}
	}
	return errors.Join(errs...)
}

// UpstreamConfig is one mirrored registry.
type UpstreamConfig struct {
	// Host is the registry clients name, e.g. "docker.io".
	Host string `yaml:"host"`
	// URL is where to fetch from, e.g. "https://registry-1.docker.io".
	URL string `yaml:"url"`
	// Username and Password (or PasswordFile) authenticate the mirror to the
	// upstream. Without them, docker's config.json, credential helpers and
	// REGMIRROR_UPSTREAM_<HOST>_USERNAME/_PASSWORD are tried, then anonymous.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// TagTTL is how long a tag is served without asking upstream (default 5m).
	TagTTL time.Duration `yaml:"tag_ttl"`
	// StaleIfError is how long past its TTL a tag may be served while the
	// upstream fails (default 168h; 0s: never).
	StaleIfError *time.Duration `yaml:"stale_if_error"`
	// ServeStaleOnNotFound serves a cached tag stale when the upstream
	// answers 404 for it, so images deleted upstream keep working (default true).
	ServeStaleOnNotFound *bool `yaml:"serve_stale_on_not_found"`
	// NotFoundTTL is how long an upstream 404 for a tag or manifest is
	// remembered (default 30s; 0s: not at all).
	NotFoundTTL *time.Duration `yaml:"not_found_ttl"`
	// BackgroundRefresh revalidates recently pulled tags shortly before
	// their tag_ttl ends (default false).
	BackgroundRefresh bool `yaml:"background_refresh"`
	// DialTimeout bounds connecting (default 3s), ResponseHeaderTimeout
	// waiting for an answer (default 5s), and Timeout a whole metadata
	// request with its token fetch and retries (default 10s).
	DialTimeout           time.Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	Timeout               time.Duration `yaml:"timeout"`
	// Retries is how often a failing idempotent request is retried
	// (default 2; 0: never).
	Retries *int `yaml:"retries"`
	// BreakerThreshold is how many requests in a row getting no answer at
	// all (refused, DNS failure, timeout) make the mirror skip the
	// upstream for BreakerCooldown, then probe it (defaults 3 and 30s; 0:
	// no breaker). BreakerFailureRatio of failed requests (those, 5xx)
	// over BreakerWindow, once it holds BreakerMinRequests, does too
	// (defaults 0.5, 30s, 20).
	BreakerThreshold    *int          `yaml:"breaker_threshold"`
	BreakerCooldown     time.Duration `yaml:"breaker_cooldown"`
	BreakerWindow       time.Duration `yaml:"breaker_window"`
	BreakerMinRequests  int           `yaml:"breaker_min_requests"`
	BreakerFailureRatio float64       `yaml:"breaker_failure_ratio"`
	// MaxConcurrentFetches caps the requests to this upstream in flight at
	// once; more wait their turn (default 16; off: no cap).
	MaxConcurrentFetches Count `yaml:"max_concurrent_fetches"`
	// Allow, when set, lists the repositories that may be pulled; Deny
	// lists those that may not, and wins. Globs on the repository path,
	// e.g. "library/*" (one level) or "myorg/**" (any depth).
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
	// Expose lists repositories (globs, like allow) that clients without
	// credentials of their own may pull even though the upstream serves
	// them only with the mirror's credentials. Repositories the upstream
	// serves to anyone need no listing; the others are refused (see the
	// README's security section).
	Expose []string `yaml:"expose"`
	// AuthHosts are host names, besides the registry's, that may receive
	// the mirror's credentials for it: a token service on another host.
	// Docker Hub's auth.docker.io and a few others are known already.
	AuthHosts []string `yaml:"auth_hosts"`
	// RedirectHosts are host names, besides the registry's and its
	// auth_hosts, that the registry may send the mirror to even though
	// they resolve to private addresses: an on-premises registry's blob
	// storage. Any other host is reached at public addresses only.
	RedirectHosts []string `yaml:"redirect_hosts"`
	// CAFile is a PEM file of CA certificates trusted besides the
	// system's roots for this upstream: an internal CA.
	CAFile string `yaml:"ca_file"`
	// ClientCert and ClientKey are the PEM certificate and key the mirror
	// presents when the upstream asks for one (mutual TLS). They are read
	// again when they change, and on SIGHUP.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// InsecureSkipVerify accepts any certificate from the upstream's own
	// hosts. Logged as a warning at startup and on every reload.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// Proxy is an http:// or https:// proxy for all of this upstream's
	// traffic, in place of HTTPS_PROXY/NO_PROXY.
	Proxy string `yaml:"proxy"`
}

// Defaults.
const (
	defaultListen  = ":5000"
	defaultDataDir = "./data"
)

// dockerHubUpstream is the embedded default upstream.
var dockerHubUpstream = UpstreamConfig{Host: "docker.io", URL: "https://registry-1.docker.io"}

// loadConfig reads a YAML config file; an empty path means no file. Its
// error, a *configErrors, lists every key that does not decode.
func loadConfig(path string) (Config, error) {
	cfg, file, err := readConfig(path)
	if err != nil {
		return cfg, err
	}
	return cfg, file.err()
}

// readConfig reads a YAML config file; an empty path means no file. It
// returns an error only when the file cannot be read or parsed at all;
// keys that do not decode are recorded in the configFile, and decoding
// goes on, so that validation can report its problems beside them.
func readConfig(path string) (Config, *configFile, error) {
	cfg := Config{path: path}
	file := &configFile{path: path}
	if path == "" {
		return cfg, file, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, file, &configErrors{path: path, problems: []configProblem{{err: fmt.Errorf("reading config: %w", err)}}}
	}
	// The tree gives validation errors their lines; an empty file (io.EOF)
	// means all defaults.
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return cfg, file, &configErrors{path: path, problems: decodeProblems(err)}
	}
	if root.Kind != 0 {
		file.root = &root
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		file.problems = decodeProblems(err)
	}
	if file.root != nil && len(file.root.Content) > 0 {
		file.problems = append(file.problems, zeroProblems(reflect.TypeFor[Config](), file.root.Content[0], "")...)
	}
	return cfg, file, nil
}

// withDefaults fills every unset field with its default.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if len(c.Upstreams) == 0 {
		c.Upstreams = []UpstreamConfig{dockerHubUpstream}
	}
	ups := make([]UpstreamConfig, len(c.Upstreams))
	for i, u := range c.Upstreams {
		if u.URL == "" {
			u.URL = wellKnownURL(u.Host)
		}
		if u.URL == "" && u.Host != "" {
			u.URL = "https://" + u.Host
		}
		ups[i] = u
	}
	c.Upstreams = ups
	return c
}

// validate reports every problem in a defaulted config at once, each a
// *keyError where one key is at fault.
func (c Config) validate() error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		key := "tls_cert" // the one that is set
		if c.TLSCert == "" {
			key = "tls_key"
		}
		errs = append(errs, keyErrorf(key, "tls_cert and tls_key must be set together"))
	}
	if c.AllowAnyUpstream && c.ListedUpstreamsOnly {
		errs = append(errs, keyErrorf("allow_any_upstream", "allow_any_upstream and listed_upstreams_only contradict each other"))
	}
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		at := func(key string) string { return fmt.Sprintf("upstreams[%d].%s", i, key) }
		if u.Host == "" {
			errs = append(errs, keyErrorf(at("host"), "upstreams[%d]: host is required", i))
		}
		if seen[u.Host] {
			errs = append(errs, keyErrorf(at("host"), "upstreams[%d]: host %q is listed twice", i, u.Host))
		}
		seen[u.Host] = true
		if parsed, err := url.Parse(u.URL); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			errs = append(errs, keyErrorf(at("url"), "upstreams[%d] (%s): url %q must be an http:// or https:// URL", i, u.Host, u.URL))
		}
		if u.Password != "" && u.PasswordFile != "" {
			errs = append(errs, keyErrorf(at("password_file"), "upstreams[%d] (%s): set password or password_file, not both", i, u.Host))
		}
		if (u.Password != "" || u.PasswordFile != "") && u.Username == "" {
			errs = append(errs, keyErrorf(at("username"), "upstreams[%d] (%s): a password needs a username", i, u.Host))
		}
		if u.Username != "" && u.Password == "" && u.PasswordFile == "" {
			errs = append(errs, keyErrorf(at("username"), "upstreams[%d] (%s): a username needs a password or password_file", i, u.Host))
		}
		if u.TagTTL < 0 {
			errs = append(errs, keyErrorf(at("tag_ttl"), "upstreams[%d] (%s): tag_ttl must not be negative", i, u.Host))
		}
		errs = append(errs, u.freshnessErrors(i)...)
		errs = append(errs, u.patternErrors(i)...)
		errs = append(errs, u.tlsErrors(i)...)
	}
	errs = append(errs, c.Cache.validate(), c.MissLimits.validate(), c.Hosted.validate(c.Auth.LDAP), c.Auth.LDAP.validate())
	errs = append(errs, c.edgeErrors()...)
	errs = append(errs, c.Prefetch.validate(), c.Notifications.validate(), c.Log.validate(), c.Cluster.validate(), c.Storage.validate(c.Cluster))
	return errors.Join(errs...)
}

// globErrors reports the repository globs at key that do not parse, each
// at its place in the list.
func globErrors(key string, patterns []string) []error {
	var errs []error
	for j, p := range patterns {
		if err := repoglob.Check(p); err != nil || p == "" {
			errs = append(errs, keyErrorf(fmt.Sprintf("%s[%d]", key, j), "%s: repository pattern %q is not a glob", key, p))
		}
	}
	return errs
}

// patternErrors reports the repository globs of upstreams[i] that do not
// parse, each at its place in its list.
func (u UpstreamConfig) patternErrors(i int) []error {
	var errs []error
	for key, patterns := range map[string][]string{"allow": u.Allow, "deny": u.Deny, "expose": u.Expose} {
		for j, p := range patterns {
			if _, err := eviction.ParseGlobs([]string{p}); err != nil || p == "" {
				errs = append(errs, keyErrorf(fmt.Sprintf("upstreams[%d].%s[%d]", i, key, j),
					"upstreams[%d] (%s): %s: repository pattern %q is not a glob", i, u.Host, key, p))
			}
		}
	}
	return errs
}
