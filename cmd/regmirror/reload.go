package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/internal/keypair"
	"github.com/regmirror/regmirror/mirror"
)

// reloadSource is how the daemon learns of a new configuration: a value on
// requests (SIGHUP) makes it call load, which reads the configuration the
// way startup did.
type reloadSource struct {
	load     func() (Config, error)
	requests <-chan os.Signal
	// applied, when set, hears how each reload ended; tests wait on it.
	applied func(error)
}

// watchReloads applies a new configuration each time one is requested,
// and reads the htpasswd file of users (when hosting is on), the token key
// files (when set) and the listener's TLS certificate (when it serves
// HTTPS) again, until ctx ends. A reload that fails leaves the running
// configuration, users, keys or certificate as they were; the daemon never
// stops because of one.
func watchReloads(ctx context.Context, src reloadSource, running Config, m *mirror.Mirror, users *mirror.Htpasswd, listenerCert *keypair.Pair, reg prometheus.Registerer, log *slog.Logger) error {
	if src.load == nil || src.requests == nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-src.requests:
		}
		next, err := reload(running, src.load, m, reg, log)
		if err != nil {
			log.Error("configuration not reloaded: the running one stays", "err", err)
		} else {
			running = next
		}
		if users != nil {
			err = errors.Join(err, reloadUsers(running.Hosted.Htpasswd, users, log))
		}
		if running.Hosted.TokenKeyFile != "" {
			err = errors.Join(err, reloadTokenKeys(running.Hosted, m, log))
		}
		if listenerCert != nil {
			err = errors.Join(err, reloadListenerCert(listenerCert, log))
		}
		if src.applied != nil {
			src.applied(err)
		}
	}
}

// reloadUsers reads the htpasswd file at path again and makes its users
// the ones logins are checked against. A file that does not load (a
// syntax error, a hash below mirror.MinBcryptCost) changes nothing.
func reloadUsers(path string, users *mirror.Htpasswd, log *slog.Logger) error {
	next, err := loadHtpasswd(path)
	if err != nil {
		log.Error("htpasswd not reloaded: the running users stay", "err", err)
		return err
	}
	users.Replace(next)
	log.Info("htpasswd reloaded", "path", path)
	return nil
}

// reloadTokenKeys reads the token key files again and makes them the keys
// tokens are signed and verified with: how the replicas of a cluster
// rotate their shared key without a restart. Files that do not load
// change nothing; the log names them, never what they hold.
func reloadTokenKeys(c HostedConfig, m *mirror.Mirror, log *slog.Logger) error {
	keys, err := c.tokenKeys()
	if err == nil {
		err = m.SetTokenKeys(keys)
	}
	if err != nil {
		log.Error("token keys not reloaded: the running keys stay", "err", err)
		return err
	}
	log.Info("token keys reloaded", "token_key_file", c.TokenKeyFile, "previous_token_key_file", c.PreviousTokenKeyFile)
	return nil
}

// reload reads the configuration and swaps in its upstreams: credentials,
// endpoints and every per-upstream setting, and which registries are
// mirrored. Transfers in flight finish on the upstreams they started with.
// Settings that only a restart can change are reported, not applied. It
// returns the configuration now running.
func reload(running Config, load func() (Config, error), m *mirror.Mirror, reg prometheus.Registerer, log *slog.Logger) (Config, error) {
	next, err := load()
	if err != nil {
		return running, err
	}
	next.notifier = running.notifier // webhooks are not reloaded
	remotes, newRemote, err := mirrorRemotes(next, log, reg)
	if err != nil {
		return running, err
	}
	if err := m.SetRemotes(remotes, newRemote); err != nil {
		return running, err
	}
	applied := running
	applied.Upstreams = next.Upstreams
	applied.ListedUpstreamsOnly = next.ListedUpstreamsOnly
	applied.AllowAnyUpstream = next.AllowAnyUpstream
	if running.Hosted.TokenKeyFile != "" && next.Hosted.TokenKeyFile != "" {
		// A rotation may add or drop previous_token_key_file; watchReloads
		// reads the files. Turning the setting on or off needs a restart,
		// reported below: it would invalidate every token in use.
		applied.Hosted.TokenKeyFile = next.Hosted.TokenKeyFile
		applied.Hosted.PreviousTokenKeyFile = next.Hosted.PreviousTokenKeyFile
	}
	if pending := restartOnly(applied, next); len(pending) > 0 {
		log.Warn("configuration reloaded, but some changed settings take effect only after a restart", "settings", pending)
	} else {
		log.Info("configuration reloaded", "upstreams", len(remotes))
	}
	return applied, nil
}

// restartOnly names the config file's top-level keys that differ between
// the running configuration and the one read, after the reloadable ones
// were applied: they need a restart.
func restartOnly(running, next Config) []string {
	var changed []string
	a, b := reflect.ValueOf(running), reflect.ValueOf(next)
	for i := range a.NumField() {
		if !a.Type().Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			changed = append(changed, yamlKey(a.Type().Field(i)))
		}
	}
	return changed
}

func yamlKey(f reflect.StructField) string {
	if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
		return name
	}
	return f.Name
}
