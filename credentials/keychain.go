package credentials

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/regmirror/regmirror/internal/registryhost"
)

// Static is one host's credentials from the config file. Exactly one of
// Password and PasswordFile is set.
type Static struct {
	Username string
	Password string
	// PasswordFile holds the password (a trailing newline is ignored). It is
	// read on every lookup, so a rotated secret takes effect without a restart.
	PasswordFile string
}

// Config says where secrets come from and for which registries. The zero
// value releases no credentials at all.
type Config struct {
	// Static maps a registry host, e.g. "docker.io", "ghcr.io" or
	// "127.0.0.1:5000", to its credentials.
	Static map[string]Static
	// Hosts are the other registries the operator configured: the docker
	// config and the environment may hold credentials for them. No other
	// host gets a credential from any source; above all not one a client
	// named, however much its name looks like a configured one.
	Hosts []string
}

// EnvPrefix starts the names of the environment variables holding upstream credentials.
const EnvPrefix = "REGMIRROR_UPSTREAM_"

// Keychain looks up upstream credentials by exact registry host. It
// implements authn.Keychain and authn.ContextKeychain and is safe for
// concurrent use.
type Keychain struct {
	static map[string]Static
	// hosts are the canonical hosts credentials may be released for: those
	// of Config.Static and Config.Hosts.
	hosts map[string]bool
	// docker is the docker config.json keychain (with credential helpers).
	docker authn.Keychain
	// lookupEnv reads the environment; tests replace it.
	lookupEnv func(string) (string, bool)
}

var (
	_ authn.Keychain        = (*Keychain)(nil)
	_ authn.ContextKeychain = (*Keychain)(nil)
)

// New validates cfg and returns its keychain. It checks that every password
// file is readable now, so a typo fails at startup rather than at first
// pull, and refuses environment variables that could be meant for two of
// the hosts (see HostKey).
func New(cfg Config) (*Keychain, error) {
	return newKeychain(cfg, os.LookupEnv)
}

func newKeychain(cfg Config, lookupEnv func(string) (string, bool)) (*Keychain, error) {
	k := &Keychain{
		static:    make(map[string]Static, len(cfg.Static)),
		hosts:     map[string]bool{},
		docker:    authn.DefaultKeychain,
		lookupEnv: lookupEnv,
	}
	for _, host := range cfg.Hosts {
		k.hosts[CanonicalHost(host)] = true
	}
	for host, s := range cfg.Static {
		canonical := CanonicalHost(host)
		if _, dup := k.static[canonical]; dup {
			return nil, fmt.Errorf("credentials: %q and another entry both name registry %s", host, canonical)
		}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("credentials: %s: %w", host, err)
		}
		if _, err := s.password(); err != nil {
			return nil, fmt.Errorf("credentials: %s: %w", host, err)
		}
		k.static[canonical] = s
		k.hosts[canonical] = true
	}
	if err := k.checkEnvKeys(); err != nil {
		return nil, err
	}
	return k, nil
}

// checkEnvKeys refuses environment credentials whose variable names could
// each be meant for two hosts: HostKey turns every character but letters
// and digits into '_', so registry-gitlab.com and registry.gitlab.com share
// REGMIRROR_UPSTREAM_REGISTRY_GITLAB_COM_*, and the password one operator
// set for one registry would go to the other.
func (k *Keychain) checkEnvKeys() error {
	byKey := map[string][]string{}
	for host := range k.hosts {
		byKey[HostKey(host)] = append(byKey[HostKey(host)], host)
	}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		hosts := byKey[key]
		if len(hosts) < 2 {
			continue
		}
		userVar, passVar := EnvNames(hosts[0])
		_, hasUser := k.lookupEnv(userVar)
		_, hasPass := k.lookupEnv(passVar)
		if hasUser || hasPass {
			slices.Sort(hosts)
			errs = append(errs, fmt.Errorf("credentials: %s and %s could be meant for any of %s; "+
				"give these registries their credentials in the config file instead", userVar, passVar, strings.Join(hosts, ", ")))
		}
	}
	return errors.Join(errs...)
}

func (s Static) validate() error {
	switch {
	case s.Username == "":
		return errors.New("username is required")
	case s.Password != "" && s.PasswordFile != "":
		return errors.New("password and password file are mutually exclusive")
	case s.Password == "" && s.PasswordFile == "":
		return errors.New("a password or a password file is required")
	}
	return nil
}

func (s Static) password() (string, error) {
	if s.PasswordFile == "" {
		return s.Password, nil
	}
	data, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		// The *PathError names the file and the failure, never its contents.
		return "", fmt.Errorf("reading password file: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// Resolve implements authn.Keychain.
func (k *Keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

// ResolveContext implements authn.ContextKeychain: it looks up the
// target's registry host.
func (k *Keychain) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	return k.Lookup(ctx, target.RegistryStr())
}

// Lookup returns the credential for a registry host, trying the static
// config, the docker config and the environment in that order, or
// authn.Anonymous when none has one or the host is not one of the
// configured ones. A result other than authn.Anonymous is a *Credential.
// Errors (unreadable password file, malformed docker config, failing
// credential helper, half-set environment) name the source, never a secret.
func (k *Keychain) Lookup(ctx context.Context, host string) (authn.Authenticator, error) {
	host = CanonicalHost(host)
	if !k.hosts[host] {
		return authn.Anonymous, nil
	}
	for _, lookup := range []func(context.Context, string) (*Credential, error){
		k.fromStatic, k.fromDockerConfig, k.fromEnv,
	} {
		c, err := lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", host, err)
		}
		if c != nil {
			return c, nil
		}
	}
	return authn.Anonymous, nil
}

func (k *Keychain) fromStatic(_ context.Context, host string) (*Credential, error) {
	s, ok := k.static[host]
	if !ok {
		return nil, nil
	}
	password, err := s.password()
	if err != nil {
		return nil, fmt.Errorf("static config: %w", err)
	}
	return &Credential{host: host, source: SourceStatic, auth: authn.AuthConfig{Username: s.Username, Password: password}}, nil
}

// fromDockerConfig asks the docker config.json keychain, which knows
// Docker Hub as https://index.docker.io/v1/ and runs credential helpers.
func (k *Keychain) fromDockerConfig(ctx context.Context, host string) (*Credential, error) {
	reg, err := name.NewRegistry(host, name.WeakValidation)
	if err != nil {
		return nil, nil // Not a name docker could store credentials under.
	}
	auth, err := authn.Resolve(ctx, k.docker, reg)
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	if auth == authn.Anonymous {
		return nil, nil
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	if *cfg == (authn.AuthConfig{}) {
		return nil, nil
	}
	return &Credential{host: host, source: SourceDockerConfig, auth: *cfg}, nil
}

func (k *Keychain) fromEnv(_ context.Context, host string) (*Credential, error) {
	userVar, passVar := EnvNames(host)
	user, hasUser := k.lookupEnv(userVar)
	pass, hasPass := k.lookupEnv(passVar)
	switch {
	case !hasUser && !hasPass:
		return nil, nil
	case user == "" || pass == "":
		return nil, fmt.Errorf("environment: %s and %s must both be set and non-empty", userVar, passVar)
	}
	return &Credential{host: host, source: SourceEnv, auth: authn.AuthConfig{Username: user, Password: pass}}, nil
}

// CanonicalHost is the one name of a registry host (see
// registryhost.Canonical), so every source agrees on one key per registry:
// Docker Hub's aliases are "docker.io", case, trailing dots and the default
// port do not count.
func CanonicalHost(host string) string { return registryhost.Canonical(host) }

// HostKey turns a host into the part of an environment variable name that
// identifies it: the canonical host upper-cased with every character that
// is not a letter or digit replaced by '_' ("127.0.0.1:5000" →
// "127_0_0_1_5000"). Several hosts can share a key; New refuses the
// environment's credentials for a key shared by two configured hosts.
func HostKey(host string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, CanonicalHost(host))
}

// EnvNames returns the names of the environment variables holding host's
// username and password.
func EnvNames(host string) (username, password string) {
	key := EnvPrefix + HostKey(host)
	return key + "_USERNAME", key + "_PASSWORD"
}
