package credentials

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
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

// Config says where secrets come from. The zero value uses the docker
// config and the environment only.
type Config struct {
	// Static maps a registry host, e.g. "docker.io", "ghcr.io" or
	// "127.0.0.1:5000", to its credentials.
	Static map[string]Static
}

// EnvPrefix starts the names of the environment variables holding upstream credentials.
const EnvPrefix = "REGMIRROR_UPSTREAM_"

// Keychain looks up upstream credentials by registry host. It implements
// authn.Keychain and authn.ContextKeychain and is safe for concurrent use.
type Keychain struct {
	static map[string]Static
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
// file is readable now, so a typo fails at startup rather than at first pull.
func New(cfg Config) (*Keychain, error) {
	k := &Keychain{
		static:    make(map[string]Static, len(cfg.Static)),
		docker:    authn.DefaultKeychain,
		lookupEnv: os.LookupEnv,
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
	}
	return k, nil
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
// authn.Anonymous when none has one. A non-nil result is a *Credential.
// Errors (unreadable password file, malformed docker config, failing
// credential helper, half-set environment) name the source, never a secret.
func (k *Keychain) Lookup(ctx context.Context, host string) (authn.Authenticator, error) {
	host = CanonicalHost(host)
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

// dockerHubNames are the hosts that all mean Docker Hub.
var dockerHubNames = map[string]bool{
	"docker.io":               true,
	"index.docker.io":         true,
	"registry-1.docker.io":    true,
	"registry.hub.docker.com": true,
}

// CanonicalHost lower-cases a registry host and maps Docker Hub's aliases
// to "docker.io", so every source agrees on one key per registry.
func CanonicalHost(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "/"))
	if dockerHubNames[host] {
		return "docker.io"
	}
	return host
}

// HostKey turns a host into the part of an environment variable name that
// identifies it: the canonical host upper-cased with every character that
// is not a letter or digit replaced by '_' ("127.0.0.1:5000" →
// "127_0_0_1_5000").
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
