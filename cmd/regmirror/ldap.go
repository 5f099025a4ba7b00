package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/regmirror/regmirror/internal/ldapauth"
	"github.com/regmirror/regmirror/mirror"
)

// AuthConfig is the `auth:` section: where the users who log in come
// from, beside the hosted.htpasswd file.
type AuthConfig struct {
	// LDAP, when its URL is set, checks logins against an LDAP directory
	// or Active Directory; it turns hosting on like hosted.htpasswd.
	LDAP LDAPConfig `yaml:"ldap"`
}

// LDAPConfig is `auth.ldap`: the directory server, the service account
// that searches it, and where users and groups are. See
// ldapauth.Config for what each setting does.
type LDAPConfig struct {
	// URL is ldap://HOST[:PORT] or ldaps://HOST[:PORT].
	URL string `yaml:"url"`
	// StartTLS upgrades an ldap:// connection to TLS first.
	StartTLS bool `yaml:"start_tls"`
	// CAFile holds the PEM certificates that verify the server's; empty:
	// the system's roots.
	CAFile string `yaml:"ca_file"`
	// BindDN and BindPasswordFile are the service account that searches
	// for users and groups; without them the searches are anonymous.
	BindDN           string `yaml:"bind_dn"`
	BindPasswordFile string `yaml:"bind_password_file"`
	// UserBase, UserFilter and NameAttribute find a user's entry and name.
	UserBase      string `yaml:"user_base"`
	UserFilter    string `yaml:"user_filter"`
	NameAttribute string `yaml:"name_attribute"`
	// MemberOf reads groups from the user's memberOf attribute; otherwise
	// GroupBase and GroupFilter search for them.
	MemberOf    bool   `yaml:"member_of"`
	GroupBase   string `yaml:"group_base"`
	GroupFilter string `yaml:"group_filter"`
	// CacheTTL is how long an answer is remembered (default 1m).
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Timeout bounds connecting and each request (default 5s).
	Timeout time.Duration `yaml:"timeout"`
}

func (c LDAPConfig) enabled() bool { return c.URL != "" }

// groups reports whether the directory tells users' groups.
func (c LDAPConfig) groups() bool { return c.enabled() && (c.MemberOf || c.GroupBase != "") }

// validate checks the settings without reading files or dialling.
func (c LDAPConfig) validate() error {
	if !c.enabled() {
		if c != (LDAPConfig{}) {
			return keyErrorf("auth.ldap", "auth.ldap: set url to use a directory")
		}
		return nil
	}
	var errs []error
	if (c.BindDN == "") != (c.BindPasswordFile == "") {
		key := "auth.ldap.bind_dn" // the one that is set
		if c.BindDN == "" {
			key = "auth.ldap.bind_password_file"
		}
		errs = append(errs, keyErrorf(key, "auth.ldap: bind_dn and bind_password_file go together"))
	}
	for key, d := range map[string]time.Duration{"cache_ttl": c.CacheTTL, "timeout": c.Timeout} {
		if d < 0 {
			errs = append(errs, keyErrorf("auth.ldap."+key, "auth.ldap: cache_ttl and timeout must not be negative"))
		}
	}
	if _, err := ldapauth.New(c.directoryConfig(nil, "")); err != nil {
		key := "auth.ldap"
		var bad *ldapauth.SettingError
		if errors.As(err, &bad) {
			key += "." + bad.Setting
		}
		errs = append(errs, keyErrorf(key, "auth.%w", err))
	}
	return errors.Join(errs...)
}

func (c LDAPConfig) directoryConfig(roots *x509.CertPool, bindPassword string) ldapauth.Config {
	return ldapauth.Config{URL: c.URL, StartTLS: c.StartTLS, RootCAs: roots, BindDN: c.BindDN, BindPassword: bindPassword,
		UserBase: c.UserBase, UserFilter: c.UserFilter, NameAttribute: c.NameAttribute,
		MemberOf: c.MemberOf, GroupBase: c.GroupBase, GroupFilter: c.GroupFilter, Timeout: c.Timeout}
}

// openDirectory reads the CA and bind password files and returns the
// directory for the mirror; nil when auth.ldap is off. Nothing is dialled:
// a directory that is down at startup fails logins, not the daemon.
func openDirectory(c LDAPConfig, log *slog.Logger) (mirror.Directory, error) {
	if !c.enabled() {
		return nil, nil
	}
	roots, password, err := c.readFiles()
	if err != nil {
		return nil, err
	}
	d, err := ldapauth.New(c.directoryConfig(roots, password))
	if err != nil {
		return nil, fmt.Errorf("auth.%w", err)
	}
	if u, _ := url.Parse(c.URL); u.Scheme == "ldap" && !c.StartTLS && !isLoopback(u.Hostname()) {
		log.Warn("auth.ldap: passwords go to the directory unencrypted: use ldaps:// or start_tls", "url", c.URL)
	}
	return ldapDirectory{d}, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// ldapDirectory is an ldapauth.Directory as the mirror knows directories.
type ldapDirectory struct{ d *ldapauth.Directory }

var _ mirror.Directory = ldapDirectory{}

// Login implements mirror.Directory.
func (l ldapDirectory) Login(ctx context.Context, user, password string) (mirror.DirectoryUser, bool, error) {
	u, ok, err := l.d.Login(ctx, user, password)
	return mirror.DirectoryUser{Name: u.Name, Groups: u.Groups}, ok, err
}

// readFiles reads the CA file and the bind password file, when set; a file
// that cannot be used is a *keyError at its setting.
func (c LDAPConfig) readFiles() (roots *x509.CertPool, password string, err error) {
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, "", keyErrorf("auth.ldap.ca_file", "auth.ldap.ca_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, "", keyErrorf("auth.ldap.ca_file", "auth.ldap.ca_file %s: no PEM certificate in it", c.CAFile)
		}
	}
	if c.BindPasswordFile != "" {
		data, err := os.ReadFile(c.BindPasswordFile)
		if err != nil {
			return nil, "", keyErrorf("auth.ldap.bind_password_file", "auth.ldap.bind_password_file: %w", err)
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	return roots, password, nil
}
