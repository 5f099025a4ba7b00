package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/internal/edge"
)

// ConnectionsConfig is the `connections:` section of the config file: what
// clients may hold open on the registry listener.
type ConnectionsConfig struct {
	// Max caps the connections open at once (default 4096; off: no cap).
	Max Count `yaml:"max"`
	// MaxPerClient caps those of one client address, an IPv6 /64 counting
	// as one (default 256; off: no cap). Connections from
	// trusted_proxies count only against Max.
	MaxPerClient Count `yaml:"max_per_client"`
	// BodyIdleTimeout is how long a request body (a push) may send
	// nothing before its connection is closed (default 1m).
	BodyIdleTimeout time.Duration `yaml:"body_idle_timeout"`
}

// Defaults of ConnectionsConfig.
const (
	defaultMaxConnections          = 4096
	defaultMaxConnectionsPerClient = 256
)

// StatusConfig is the `status:` section of the config file.
type StatusConfig struct {
	// Users are users of hosted.htpasswd who see repository names, tags
	// and digests on the status page; everyone else sees only aggregate
	// numbers. Empty: nobody, over HTTP; `regmirror cache stats` on the
	// host still shows them.
	Users []string `yaml:"users"`
}

// edgeErrors reports the problems of the settings of the network edge.
func (c Config) edgeErrors() []error {
	var errs []error
	if _, err := edge.ParseProxies(c.TrustedProxies); err != nil {
		errs = append(errs, &keyError{key: "trusted_proxies", err: fmt.Errorf("trusted_proxies: %w", err)})
	}
	if c.Connections.BodyIdleTimeout < 0 {
		errs = append(errs, keyErrorf("connections.body_idle_timeout", "connections.body_idle_timeout must not be negative"))
	}
	if len(c.Status.Users) > 0 && !c.Hosted.enabled() && !c.Auth.LDAP.enabled() {
		errs = append(errs, keyErrorf("status.users", "status.users: set hosted.htpasswd or auth.ldap, which hold those users' passwords"))
	}
	return errs
}

// limit maps a configured cap to edge's: 0 is the default, negative none.
func limit(configured, def int) int {
	switch {
	case configured == 0:
		return def
	case configured < 0:
		return 0
	}
	return configured
}

// guardEdge wraps the registry listener and its handler in the guards of
// internal/edge: connection caps, trusted proxies, canonical paths and
// request bodies. Connections from the replicas of node, which carry the
// hosted forwards of many clients, count, like a trusted proxy's, only
// against the total.
func guardEdge(cfg Config, ln net.Listener, h http.Handler, node *cluster.Node, reg prometheus.Registerer, log *slog.Logger) (net.Listener, http.Handler, error) {
	proxies, err := edge.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, nil, fmt.Errorf("trusted_proxies: %w", err)
	}
	metrics, err := edge.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	limits := edge.ConnLimits{
		Total:     limit(int(cfg.Connections.Max), defaultMaxConnections),
		PerClient: limit(int(cfg.Connections.MaxPerClient), defaultMaxConnectionsPerClient),
		Exempt: func(a netip.Addr) bool {
			return proxies.Contains(a) || (node != nil && node.IsMemberAddr(a))
		},
	}
	h = edge.Handler(h, edge.Options{
		Proxies:         proxies,
		BodyIdleTimeout: cfg.Connections.BodyIdleTimeout,
		Log:             log,
		Metrics:         metrics,
	})
	return edge.LimitListener(ln, limits, log, metrics), h, nil
}
