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
	// "team/**". Empty: any name of Docker Hub may be pushed, and a name is
	// hosted once it holds pushed content.
	Repositories []string `yaml:"repositories"`
	// AnonymousPull lets anyone pull hosted repositories (default true);
	// false makes those pulls need a login too.
	AnonymousPull *bool `yaml:"anonymous_pull"`
	// Delete enables deleting hosted manifests, tags and blobs.
	Delete bool `yaml:"delete"`
	// UploadTTL is how long an unfinished upload may sit idle (default 24h).
	UploadTTL time.Duration `yaml:"upload_ttl"`
}

func (c HostedConfig) enabled() bool { return c.Htpasswd != "" }

func (c HostedConfig) validate() error {
	if c.enabled() {
		if c.UploadTTL < 0 {
			return errors.New("hosted: upload_ttl must not be negative")
		}
		return nil
	}
	if len(c.Repositories) > 0 || c.AnonymousPull != nil || c.Delete || c.UploadTTL != 0 {
		return errors.New("hosted: set htpasswd to enable hosted repositories (pushes need users)")
	}
	return nil
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
