package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/regmirror/regmirror/internal/registryhost"
)

// ErrCredentialsWithheld means the upstream sent the mirror elsewhere (a
// token realm in its challenge, a redirect) and following would have
// carried the mirror's credentials or token to a host that is not the
// registry's, or would have reached a loopback or IP address the registry
// does not live on. Retrying does not help; Config.AuthHosts may.
var ErrCredentialsWithheld = errors.New("refusing to follow the upstream elsewhere")

// knownAuthHosts are the token services of public registries whose realm
// is not on the registry's own host, keyed by the registry's canonical
// name: registryhost folds its aliases (registry-1.docker.io is docker.io).
var knownAuthHosts = map[string][]string{
	registryhost.DockerHub: {"auth.docker.io"},
	"registry.gitlab.com":  {"gitlab.com"},
	"nvcr.io":              {"authn.nvidia.com"},
	"docker.elastic.co":    {"docker-auth.elastic.co"},
}

// authHostsOf are the known token services of the registry at host, by
// any of its names.
func authHostsOf(host string) []string {
	return knownAuthHosts[registryhost.Hostname(host)]
}

// credentialGuard is the bottom of the upstream transport: every request
// the client sends passes it, the registry's, the token service's and the
// blob redirects' alike. A bearer challenge decides where ggcr sends the
// mirror's password, and a redirect where net/http sends the next request,
// so an upstream that is compromised, or a man in the middle of plain
// http, could otherwise collect the credentials at a host of its choosing
// or turn the mirror against its own network. The guard lets requests to
// the registry's host through; elsewhere, it lets through only requests
// that carry nothing secret (GET or HEAD without Authorization), unless the
// host is one of the registry's token services, and never to a loopback or
// IP address unless the registry itself is at one. Another port of the
// registry's host is another service: it gets no credentials either.
type credentialGuard struct {
	inner     http.RoundTripper
	registry  string          // the registry's host[:port], as configured
	authHosts map[string]bool // lower-case host names credentials may go to
	// literal reports that the registry is at an IP address or localhost,
	// where its token service and blob store may be too (tests, on-prem).
	literal bool
}

func newCredentialGuard(inner http.RoundTripper, registryHost, configuredHost string, authHosts []string) *credentialGuard {
	g := &credentialGuard{
		inner:     inner,
		registry:  strings.ToLower(registryHost),
		authHosts: map[string]bool{},
		literal:   isLiteralHost(hostname(registryHost)),
	}
	for _, h := range append(append(authHostsOf(registryHost), authHostsOf(configuredHost)...), authHosts...) {
		g.authHosts[strings.ToLower(h)] = true
	}
	return g
}

func (g *credentialGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.check(req); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return g.inner.RoundTrip(req)
}

// check decides whether req may leave. The error names the host, never
// the request's URL: a token request's query, or a signed CDN URL, is not
// for logs.
func (g *credentialGuard) check(req *http.Request) error {
	host := strings.ToLower(req.URL.Host)
	if host == g.registry {
		return nil
	}
	name := strings.ToLower(req.URL.Hostname())
	if isLiteralHost(name) && !g.literal {
		return fmt.Errorf("%w: %s is a loopback or IP address and the registry is not", ErrCredentialsWithheld, name)
	}
	if carriesSecret(req) && !g.authHosts[name] {
		return fmt.Errorf("%w: %s is not the registry's host or one of its token services (auth_hosts); its credentials stay home",
			ErrCredentialsWithheld, name)
	}
	return nil
}

// carriesSecret reports whether a request could hand over a credential: an
// Authorization header (Basic password or bearer token), user info in the
// URL, or a body (an OAuth2 token request posts the refresh token).
func carriesSecret(req *http.Request) bool {
	return req.Header.Get("Authorization") != "" || req.URL.User != nil ||
		(req.Method != http.MethodGet && req.Method != http.MethodHead)
}

// hostname strips the port from host[:port].
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(strings.Trim(host, "[]"))
}

// isLiteralHost reports an IP address or a localhost name.
func isLiteralHost(name string) bool {
	return net.ParseIP(name) != nil || name == "localhost" || strings.HasSuffix(name, ".localhost")
}
