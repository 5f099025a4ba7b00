package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/mirror"
)

// HostedConfig is the `hosted:` section of the config file: repositories
// that clients push to at the mirror's own URL. Hosting is on when Htpasswd
// is set; every push needs a login.
type HostedConfig struct {
	// Htpasswd is a file of users allowed to push, "user:bcrypt-hash" per
	// line, as `htpasswd -B` writes it.
	Htpasswd string `yaml:"htpasswd"`
	// Repositories are globs of the hosted names, e.g. "team/*" or
	// "team/**": only these take pushes. Empty: nothing can be pushed.
	Repositories []string `yaml:"repositories"`
	// FallThrough lists hosted names (globs) that pulls also look up
	// upstream, merging tags like a Nexus group. Empty: hosted names are
	// never looked up upstream.
	FallThrough []string `yaml:"fall_through"`
	// Groups maps group names to their users, for Permissions.
	Groups map[string][]string `yaml:"groups"`
	// Permissions grant pull, push and delete on hosted repositories. Empty:
	// every user may pull and push every hosted repository, and
	// AnonymousPull says whether anyone may pull.
	Permissions []PermissionConfig `yaml:"permissions"`
	// AnonymousPull lets anyone pull hosted repositories (default true);
	// false makes those pulls need a login too. With Permissions, say
	// `anonymous: true` in a permission instead.
	AnonymousPull *bool `yaml:"anonymous_pull"`
	// Delete enables deleting hosted manifests, tags and blobs.
	Delete bool `yaml:"delete"`
	// UploadTTL is how long an unfinished upload may sit idle (default 24h).
	UploadTTL time.Duration `yaml:"upload_ttl"`
}

// PermissionConfig is one entry of hosted.permissions: it grants actions
// (pull, push, delete) on the repositories its globs name to users, to the
// members of groups, and with anonymous to everyone (pull only).
type PermissionConfig struct {
	Repositories []string `yaml:"repositories"`
	Users        []string `yaml:"users"`
	Groups       []string `yaml:"groups"`
	Anonymous    bool     `yaml:"anonymous"`
	Actions      []string `yaml:"actions"`
}

func (c HostedConfig) enabled() bool { return c.Htpasswd != "" }

func (c HostedConfig) validate() error {
	if c.enabled() {
		if c.UploadTTL < 0 {
			return errors.New("hosted: upload_ttl must not be negative")
		}
		if len(c.Permissions) > 0 && c.AnonymousPull != nil {
			return errors.New("hosted: anonymous_pull and permissions do not go together: grant anonymous pull in a permission")
		}
		for i, p := range c.Permissions {
			for _, g := range p.Groups {
				if _, ok := c.Groups[g]; !ok {
					return fmt.Errorf("hosted: permission %d names group %q, which hosted.groups does not define", i+1, g)
				}
			}
		}
		return nil
	}
	if len(c.Repositories) > 0 || len(c.FallThrough) > 0 || len(c.Groups) > 0 || len(c.Permissions) > 0 ||
		c.AnonymousPull != nil || c.Delete || c.UploadTTL != 0 {
		return errors.New("hosted: set htpasswd to enable hosted repositories (pushes need users)")
	}
	return nil
}

// permissions converts the configured permissions for the mirror.
func (c HostedConfig) permissions() []mirror.Permission {
	var perms []mirror.Permission
	for _, p := range c.Permissions {
		actions := make([]mirror.Action, len(p.Actions))
		for i, a := range p.Actions {
			actions[i] = mirror.Action(a)
		}
		perms = append(perms, mirror.Permission{Repositories: p.Repositories, Users: p.Users, Groups: p.Groups,
			Anonymous: p.Anonymous, Actions: actions})
	}
	return perms
}

// openHosted opens the hosted repositories of store and the mirror's
// options for them; both are nil when hosting is off.
func openHosted(store *cache.Store, c HostedConfig) (*cache.Hosted, *mirror.HostedOptions, error) {
	if !c.enabled() {
		return nil, nil, nil
	}
	f, err := os.Open(c.Htpasswd)
	if err != nil {
		return nil, nil, fmt.Errorf("hosted: %w", err)
	}
	defer f.Close()
	users, err := mirror.ParseHtpasswd(f)
	if err != nil {
		return nil, nil, fmt.Errorf("hosted: %s: %w", c.Htpasswd, err)
	}
	hosted, err := store.Hosted(cache.HostedOptions{UploadTTL: c.UploadTTL})
	if err != nil {
		return nil, nil, err
	}
	return hosted, &mirror.HostedOptions{
		Store:        hosted,
		Users:        users,
		Repositories: c.Repositories,
		FallThrough:  c.FallThrough,
		Groups:       c.Groups,
		Permissions:  c.permissions(),
		PrivatePulls: c.AnonymousPull != nil && !*c.AnonymousPull,
		AllowDelete:  c.Delete,
	}, nil
}

// uploadSweepInterval is how often expired upload sessions are removed.
const uploadSweepInterval = 10 * time.Minute

// runUploadSweeper removes expired upload sessions until ctx ends.
func runUploadSweeper(ctx context.Context, hosted *cache.Hosted, log *slog.Logger) error {
	if hosted == nil {
		return nil
	}
	tick := time.NewTicker(uploadSweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			n, err := hosted.ExpireUploads(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("expiring upload sessions", "error", err)
			}
			if n > 0 {
				log.Info("expired upload sessions", "count", n)
			}
		}
	}
}

// htpasswdCommand prints an htpasswd line for a user, for the hosted
// section's htpasswd file, reading the password from standard input so that
// it appears in no process list or shell history.
func htpasswdCommand() *cli.Command {
	return &cli.Command{
		Name:      "htpasswd",
		Usage:     "print an htpasswd line (bcrypt) for USER, reading the password from standard input",
		ArgsUsage: "USER",
		Action: func(c *cli.Context) error {
			user := c.Args().First()
			if user == "" || c.NArg() != 1 || strings.ContainsAny(user, ":\n") {
				return errors.New("usage: regmirror htpasswd USER < password-file")
			}
			line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the password: %w", err)
			}
			password := strings.TrimRight(line, "\r\n")
			if password == "" {
				return errors.New("empty password on standard input")
			}
			hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s:%s\n", user, hash)
			return err
		},
	}
}
