package credentials

import (
	"fmt"
	"log/slog"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Source names where a credential was found.
type Source string

// The sources, in lookup order.
const (
	SourceStatic       Source = "static"
	SourceDockerConfig Source = "docker-config"
	SourceEnv          Source = "env"
)

// Credential is the secret for one registry host. It implements
// authn.Authenticator; Authorization is the only way to read the secret.
// Printing it with fmt (any verb), String or slog shows the host, the
// source and the username, never the password or tokens.
// A Credential is immutable and safe for concurrent use.
type Credential struct {
	host   string
	source Source
	auth   authn.AuthConfig
}

var (
	_ authn.Authenticator = (*Credential)(nil)
	_ fmt.Formatter       = (*Credential)(nil)
	_ slog.LogValuer      = (*Credential)(nil)
)

// Host is the canonical registry host the credential is for.
func (c Credential) Host() string { return c.host }

// Source tells where the credential came from.
func (c Credential) Source() Source { return c.source }

// Username is the account name; it is not secret.
func (c Credential) Username() string { return c.auth.Username }

// Authorization implements authn.Authenticator.
func (c Credential) Authorization() (*authn.AuthConfig, error) {
	auth := c.auth
	return &auth, nil
}

// String describes the credential without its secret.
func (c Credential) String() string {
	return fmt.Sprintf("credential{host: %s, source: %s, username: %q, secret: <redacted>}", c.host, c.source, c.auth.Username)
}

// Format makes every fmt verb, including %v, %+v and %#v, print String,
// so reflection never reaches the secret.
func (c Credential) Format(f fmt.State, _ rune) {
	fmt.Fprint(f, c.String())
}

// LogValue implements slog.LogValuer without the secret.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.host),
		slog.String("source", string(c.source)),
		slog.String("username", c.auth.Username),
	)
}

// MarshalText keeps encoders (JSON, YAML) from serialising the secret.
func (c Credential) MarshalText() ([]byte, error) {
	return []byte(c.String()), nil
}
