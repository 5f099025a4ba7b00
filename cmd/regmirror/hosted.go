package main

import (
	"bufio"
	"bytes"
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
// or auth.ldap is set; every push needs a login.
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
	// Groups maps group names to their users, for Permissions; auth.ldap
	// may put users in groups too.
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
	// UploadTTL is how long an unfinished upload may sit idle (default 1h).
	UploadTTL time.Duration `yaml:"upload_ttl"`
	// MaxUploadSize caps one pushed blob (default 10GiB; 0: no cap).
	MaxUploadSize *Size `yaml:"max_upload_size"`
	// MaxUploadSessions caps each user's unfinished uploads (default 16;
	// 0: no cap).
	MaxUploadSessions *int `yaml:"max_upload_sessions"`
	// MaxStoragePerUser caps the stored bytes of the blobs each user pushed
	// (default 100GiB; 0: no cap).
	MaxStoragePerUser *Size `yaml:"max_storage_per_user"`
	// MaxFailedLoginsPerClient and MaxFailedLoginsPerUser are how many
	// failed logins one client address, and one user name from anywhere,
	// may make per FailedLoginWindow (defaults 10, 30 and 15m; 0: no limit).
	MaxFailedLoginsPerClient *int          `yaml:"max_failed_logins_per_client"`
	MaxFailedLoginsPerUser   *int          `yaml:"max_failed_logins_per_user"`
	FailedLoginWindow        time.Duration `yaml:"failed_login_window"`
	// TokenKeyFile holds the key that signs the tokens of logins, shared
	// by the replicas of a cluster so that a token fetched from one is
	// accepted by all; PreviousTokenKeyFile, during a rotation, the old
	// one, still accepted. Empty: a random key per process.
	TokenKeyFile         string `yaml:"token_key_file"`
	PreviousTokenKeyFile string `yaml:"previous_token_key_file"`
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

// enabled reports whether hosted.htpasswd is set; auth.ldap turns hosting
// on too.
func (c HostedConfig) enabled() bool { return c.Htpasswd != "" }

func (c HostedConfig) validate(directory LDAPConfig) error {
	if !c.enabled() && !directory.enabled() {
		if len(c.Repositories) > 0 || len(c.FallThrough) > 0 || len(c.Groups) > 0 || len(c.Permissions) > 0 ||
			c.AnonymousPull != nil || c.Delete || c.UploadTTL != 0 || c.limitsSet() || c.TokenKeyFile != "" || c.PreviousTokenKeyFile != "" {
			return keyErrorf("hosted", "hosted: set htpasswd or auth.ldap to enable hosted repositories (pushes need users)")
		}
		return nil
	}
	var errs []error
	if len(c.Permissions) > 0 && c.AnonymousPull != nil {
		errs = append(errs, keyErrorf("hosted.anonymous_pull", "hosted: anonymous_pull and permissions do not go together: grant anonymous pull in a permission"))
	}
	if c.PreviousTokenKeyFile != "" && c.TokenKeyFile == "" {
		errs = append(errs, keyErrorf("hosted.previous_token_key_file", "hosted.previous_token_key_file needs token_key_file"))
	}
	errs = append(errs, globErrors("hosted.repositories", c.Repositories)...)
	errs = append(errs, globErrors("hosted.fall_through", c.FallThrough)...)
	for i, p := range c.Permissions {
		at := fmt.Sprintf("hosted.permissions[%d]", i)
		if bad := globErrors(at+".repositories", p.Repositories); len(bad) > 0 {
			errs = append(errs, bad...)
		} else if err := c.permissions()[i].Validate(); err != nil {
			errs = append(errs, keyErrorf(at, "hosted: permission %d: %w", i+1, err))
		}
		for j, g := range p.Groups {
			if _, ok := c.Groups[g]; !ok && !directory.groups() {
				errs = append(errs, keyErrorf(fmt.Sprintf("hosted.permissions[%d].groups[%d]", i, j),
					"hosted: permission %d names group %q, which hosted.groups does not define (nor does auth.ldap look up groups)", i+1, g))
			}
		}
	}
	return errors.Join(append(errs, c.checkLimits())...)
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

func (c HostedConfig) limitsSet() bool {
	return c.MaxUploadSize != nil || c.MaxUploadSessions != nil || c.MaxStoragePerUser != nil ||
		c.MaxFailedLoginsPerClient != nil || c.MaxFailedLoginsPerUser != nil || c.FailedLoginWindow != 0
}

func (c HostedConfig) checkLimits() error {
	var errs []error
	if c.UploadTTL < 0 {
		errs = append(errs, keyErrorf("hosted.upload_ttl", "hosted: upload_ttl must not be negative"))
	}
	if c.FailedLoginWindow < 0 {
		errs = append(errs, keyErrorf("hosted.failed_login_window", "hosted: failed_login_window must not be negative"))
	}
	for key, v := range map[string]*int{
		"max_upload_sessions":          c.MaxUploadSessions,
		"max_failed_logins_per_client": c.MaxFailedLoginsPerClient,
		"max_failed_logins_per_user":   c.MaxFailedLoginsPerUser,
	} {
		if v != nil && *v < 0 {
			errs = append(errs, keyErrorf("hosted."+key, "hosted: %s must not be negative (0 means no limit)", key))
		}
	}
	return errors.Join(errs...)
}

// uploadLimits maps the config's caps to the mirror's, where 0 means the
// default and a negative value no cap: in the config file, a cap left out
// is the default and only an explicit 0 lifts it.
func (c HostedConfig) uploadLimits() mirror.UploadLimits {
	return mirror.UploadLimits{
		MaxUploadSize: int64(zeroMeansOff(c.MaxUploadSize)),
		MaxSessions:   zeroMeansOff(c.MaxUploadSessions),
		MaxStorage:    int64(zeroMeansOff(c.MaxStoragePerUser)),
	}
}

func (c HostedConfig) loginLimits() mirror.LoginLimits {
	return mirror.LoginLimits{
		MaxFailuresPerClient: zeroMeansOff(c.MaxFailedLoginsPerClient),
		MaxFailuresPerUser:   zeroMeansOff(c.MaxFailedLoginsPerUser),
		FailureWindow:        c.FailedLoginWindow,
	}
}

// loadHtpasswd reads the users file and refuses hashes cheaper than
// mirror.MinBcryptCost, whose passwords would be quick to guess.
func loadHtpasswd(path string) (*mirror.Htpasswd, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hosted: %w", err)
	}
	defer f.Close()
	users, err := mirror.ParseHtpasswd(f)
	if err == nil {
		err = users.CheckCost(mirror.MinBcryptCost)
	}
	if err != nil {
		return nil, fmt.Errorf("hosted: %s: %w", path, err)
	}
	return users, nil
}

// tokenKeys reads the token key files; the zero keys, a random key per
// process, without token_key_file. Errors name the files, never what they
// hold.
func (c HostedConfig) tokenKeys() (mirror.TokenKeys, error) {
	var keys mirror.TokenKeys
	if c.TokenKeyFile == "" {
		return keys, nil
	}
	var err error
	if keys.Current, err = readTokenKey("hosted.token_key_file", c.TokenKeyFile); err != nil {
		return keys, err
	}
	if c.PreviousTokenKeyFile != "" {
		if keys.Previous, err = readTokenKey("hosted.previous_token_key_file", c.PreviousTokenKeyFile); err != nil {
			return keys, err
		}
	}
	return keys, nil
}

// readTokenKey reads the key file at path, the setting at key, without the
// white space around it (the newline an editor or echo adds).
func readTokenKey(key, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, keyErrorf(key, "%s: %w", key, err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) < mirror.MinTokenKeyLen {
		return nil, keyErrorf(key, "%s: %s holds fewer than %d bytes: make one with openssl rand -hex 32", key, path, mirror.MinTokenKeyLen)
	}
	return secret, nil
}

// tokenKeyErrors reports the token key files the daemon could not use,
// for config check.
func (c HostedConfig) tokenKeyErrors() []error {
	if _, err := c.tokenKeys(); err != nil {
		return []error{err}
	}
	return nil
}

// openHosted opens the hosted repositories of store and the mirror's
// options for them; both are nil when hosting is off.
func openHosted(store *cache.Store, c HostedConfig, auth AuthConfig, log *slog.Logger) (*cache.Hosted, *mirror.HostedOptions, error) {
	if !c.enabled() && !auth.LDAP.enabled() {
		return nil, nil, nil
	}
	var users mirror.Authenticator
	if c.enabled() {
		local, err := loadHtpasswd(c.Htpasswd)
		if err != nil {
			return nil, nil, err
		}
		users = local
	}
	directory, err := openDirectory(auth.LDAP, log)
	if err != nil {
		return nil, nil, err
	}
	tokenKeys, err := c.tokenKeys()
	if err != nil {
		return nil, nil, err
	}
	hosted, err := store.Hosted(cache.HostedOptions{UploadTTL: c.UploadTTL})
	if err != nil {
		return nil, nil, err
	}
	return hosted, &mirror.HostedOptions{
		Store:           hosted,
		Users:           users,
		Directory:       directory,
		DirectoryMemory: auth.LDAP.CacheTTL,
		Logins:          c.loginLimits(),
		Uploads:         c.uploadLimits(),
		Repositories:    c.Repositories,
		FallThrough:     c.FallThrough,
		Groups:          c.Groups,
		Permissions:     c.permissions(),
		PrivatePulls:    c.AnonymousPull != nil && !*c.AnonymousPull,
		AllowDelete:     c.Delete,
		TokenKeys:       tokenKeys,
	}, nil
}

// hostedUsers is the users of the hosted options, for reloads; nil when
// hosting is off.
func hostedUsers(o *mirror.HostedOptions) *mirror.Htpasswd {
	if o == nil {
		return nil
	}
	users, _ := o.Users.(*mirror.Htpasswd)
	return users
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
				return usageErrorf("usage: regmirror htpasswd USER < password-file")
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
