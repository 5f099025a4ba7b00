package ldapauth

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/go-ldap/ldap/v3"
)

// Defaults of Config.
const (
	DefaultUserFilter    = "(uid={user})"
	DefaultNameAttribute = "uid"
	DefaultGroupFilter   = "(|(member={dn})(uniqueMember={dn})(memberUid={user}))"
	DefaultTimeout       = 5 * time.Second
)

// maxNameLength bounds the user names sent to the directory.
const maxNameLength = 256

// Config says how to reach the directory and where its users and groups
// are. The zero value of an optional field means its default.
type Config struct {
	// URL is ldap://HOST[:PORT] or ldaps://HOST[:PORT]. Required.
	URL string
	// StartTLS upgrades an ldap:// connection to TLS before anything is
	// sent: without it or ldaps://, passwords cross the network in clear.
	StartTLS bool
	// RootCAs verify the server's certificate; nil means the system's.
	RootCAs *x509.CertPool
	// BindDN and BindPassword are the service account that searches for
	// users and groups; an empty BindDN searches anonymously.
	BindDN       string
	BindPassword string
	// UserBase is where users are searched for (the whole subtree). Required.
	UserBase string
	// UserFilter finds the entry of a user; {user} stands for the name the
	// client logged in with, escaped. Default DefaultUserFilter; Active
	// Directory: "(sAMAccountName={user})".
	UserFilter string
	// NameAttribute is the attribute of the user's entry that holds the
	// user's name as permissions and per-user caps know it, so that "Alice"
	// and "alice" are one user. Default DefaultNameAttribute. An entry
	// without it keeps the name the client sent.
	NameAttribute string
	// MemberOf reads the user's groups from the entry's memberOf attribute
	// (Active Directory; OpenLDAP with the memberof overlay), keeping those
	// under GroupBase when it is set.
	MemberOf bool
	// GroupBase is where groups are: without MemberOf, the subtree searched
	// with GroupFilter. Empty, without MemberOf: users have no groups.
	GroupBase string
	// GroupFilter finds the groups of a user; {dn} stands for the user's
	// distinguished name and {user} for the name, both escaped. Default
	// DefaultGroupFilter (groupOfNames, groupOfUniqueNames, posixGroup).
	GroupFilter string
	// Timeout bounds connecting and each request (default DefaultTimeout).
	Timeout time.Duration
}

// User is a user whose password the directory accepted.
type User struct {
	// Name is the value of NameAttribute, or the name logged in with.
	Name string
	// Groups are the names of the user's groups: the value of the first
	// component of each group's DN (cn=devs,ou=groups,... is "devs").
	Groups []string
}

// Directory checks logins against one LDAP server. Safe for concurrent use.
type Directory struct {
	c         Config
	url       *url.URL
	groupBase *ldap.DN // nil: groups anywhere (memberOf)
}

// SettingError is a setting of Config that New cannot use. Setting names
// it as the config file does ("user_filter"), so that the caller can point
// at it.
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

func settingErrorf(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// New checks c and returns a Directory for it; nothing is dialled yet. A
// setting it cannot use is a *SettingError.
func New(c Config) (*Directory, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, settingErrorf("url", "ldap url %q: want ldap://HOST[:PORT] or ldaps://HOST[:PORT]", c.URL)
	}
	if c.StartTLS && u.Scheme == "ldaps" {
		return nil, settingErrorf("start_tls", "ldap: start_tls is for ldap:// URLs; ldaps:// is TLS already")
	}
	if c.UserBase == "" {
		return nil, settingErrorf("user_base", "ldap: user_base is required")
	}
	c.UserFilter = cmp.Or(c.UserFilter, DefaultUserFilter)
	c.NameAttribute = cmp.Or(c.NameAttribute, DefaultNameAttribute)
	c.GroupFilter = cmp.Or(c.GroupFilter, DefaultGroupFilter)
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if !strings.Contains(c.UserFilter, "{user}") {
		return nil, settingErrorf("user_filter", "ldap: user_filter %q does not use {user}", c.UserFilter)
	}
	for _, f := range []struct{ setting, filter string }{{"user_filter", c.UserFilter}, {"group_filter", c.GroupFilter}} {
		expanded := expand(f.filter, "x", "x")
		if _, err := ldap.CompileFilter(expanded); err != nil {
			return nil, settingErrorf(f.setting, "ldap: filter %q: %w", expanded, err)
		}
	}
	d := &Directory{c: c, url: u}
	if c.GroupBase != "" {
		if d.groupBase, err = ldap.ParseDN(c.GroupBase); err != nil {
			return nil, settingErrorf("group_base", "ldap: group_base: %w", err)
		}
	}
	return d, nil
}

// Groups reports whether the directory tells users' groups.
func (d *Directory) Groups() bool { return d.c.MemberOf || d.c.GroupBase != "" }

// Login checks user's password. ok is false, with a nil error, for a name
// the directory does not know and for a wrong password; an error means the
// directory could not decide (unreachable, a certificate it cannot verify,
// a refused service account, a filter matching several entries). Errors
// never hold the password.
func (d *Directory) Login(ctx context.Context, user, password string) (u User, ok bool, err error) {
	if password == "" || !validName(user) {
		// An empty password would be an anonymous bind, which succeeds.
		return User{}, false, nil
	}
	conn, err := d.dial(ctx)
	if err != nil {
		return User{}, false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := d.bindService(conn); err != nil {
		return User{}, false, err
	}
	entry, err := d.findUser(conn, user)
	if err != nil || entry == nil {
		return User{}, false, err
	}
	if err := conn.Bind(entry.DN, password); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return User{}, false, nil
		}
		return User{}, false, fmt.Errorf("ldap: binding as the user's entry: %w", err)
	}
	u = User{Name: user}
	if name := entry.GetAttributeValue(d.c.NameAttribute); name != "" {
		u.Name = name
	}
	if u.Groups, err = d.groupsOf(conn, entry, user); err != nil {
		return User{}, false, err
	}
	return u, true, nil
}

// validName refuses names no directory holds: empty, overlong, or with
// control characters.
func validName(user string) bool {
	return user != "" && len(user) <= maxNameLength && !strings.ContainsFunc(user, unicode.IsControl)
}

// dial connects and, with StartTLS, upgrades the connection; ctx bounds
// the connecting.
func (d *Directory) dial(ctx context.Context) (*ldap.Conn, error) {
	host := d.url.Hostname()
	tlsConfig := &tls.Config{ServerName: host, RootCAs: d.c.RootCAs, MinVersion: tls.VersionTLS12}
	addr := d.url.Host
	if d.url.Port() == "" {
		port := "389"
		if d.url.Scheme == "ldaps" {
			port = "636"
		}
		addr = net.JoinHostPort(host, port)
	}
	dialer := &net.Dialer{Timeout: d.c.Timeout}
	raw, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ldap: connecting to %s: %w", d.url.Host, err)
	}
	if d.url.Scheme == "ldaps" {
		tc := tls.Client(raw, tlsConfig)
		hctx, cancel := context.WithTimeout(ctx, d.c.Timeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("ldap: TLS with %s: %w", d.url.Host, err)
		}
		raw = tc
	}
	conn := ldap.NewConn(raw, d.url.Scheme == "ldaps")
	conn.SetTimeout(d.c.Timeout)
	conn.Start()
	if d.c.StartTLS {
		if err := conn.StartTLS(tlsConfig); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ldap: StartTLS with %s: %w", d.url.Host, err)
		}
	}
	return conn, nil
}

// bindService binds as the service account, or stays anonymous.
func (d *Directory) bindService(conn *ldap.Conn) error {
	if d.c.BindDN == "" {
		return nil
	}
	if err := conn.Bind(d.c.BindDN, d.c.BindPassword); err != nil {
		return fmt.Errorf("ldap: binding as %s (bind_dn): %w", d.c.BindDN, err)
	}
	return nil
}

// findUser returns the one entry UserFilter finds for user; nil when there
// is none.
func (d *Directory) findUser(conn *ldap.Conn, user string) (*ldap.Entry, error) {
	attrs := []string{d.c.NameAttribute}
	if d.c.MemberOf {
		attrs = append(attrs, "memberOf")
	}
	filter := expand(d.c.UserFilter, user, "")
	res, err := conn.Search(ldap.NewSearchRequest(d.c.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, int(d.c.Timeout.Seconds()), false, filter, attrs, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || (err == nil && len(res.Entries) > 1) {
		return nil, fmt.Errorf("ldap: user_filter %s finds more than one entry under %s", filter, d.c.UserBase)
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, fmt.Errorf("ldap: user_base %s does not exist", d.c.UserBase)
	}
	if err != nil {
		return nil, fmt.Errorf("ldap: searching for the user under %s: %w", d.c.UserBase, err)
	}
	if len(res.Entries) == 0 {
		return nil, nil
	}
	return res.Entries[0], nil
}

// groupsOf returns the names of the user's groups.
func (d *Directory) groupsOf(conn *ldap.Conn, entry *ldap.Entry, user string) ([]string, error) {
	if d.c.MemberOf {
		return d.namesUnderBase(entry.GetAttributeValues("memberOf")), nil
	}
	if d.c.GroupBase == "" {
		return nil, nil
	}
	// The user's own rights may not reach the groups: search as the
	// service account again.
	if d.c.BindDN == "" {
		if err := conn.UnauthenticatedBind(""); err != nil {
			return nil, fmt.Errorf("ldap: binding anonymously again: %w", err)
		}
	} else if err := d.bindService(conn); err != nil {
		return nil, err
	}
	res, err := conn.Search(ldap.NewSearchRequest(d.c.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, int(d.c.Timeout.Seconds()), false, expand(d.c.GroupFilter, user, entry.DN), []string{"1.1"}, nil))
	if err != nil {
		return nil, fmt.Errorf("ldap: searching for the user's groups under %s: %w", d.c.GroupBase, err)
	}
	dns := make([]string, len(res.Entries))
	for i, e := range res.Entries {
		dns[i] = e.DN
	}
	return d.namesUnderBase(dns), nil
}

// namesUnderBase returns the names of the groups whose DNs lie under
// GroupBase (anywhere, without one), sorted and without repeats.
func (d *Directory) namesUnderBase(dns []string) []string {
	var names []string
	for _, s := range dns {
		dn, err := ldap.ParseDN(s)
		if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) == 0 {
			continue
		}
		if d.groupBase != nil && !d.groupBase.AncestorOfFold(dn) {
			continue
		}
		names = append(names, dn.RDNs[0].Attributes[0].Value)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// expand fills a filter's placeholders with escaped values.
func expand(filter, user, dn string) string {
	return strings.NewReplacer("{user}", ldap.EscapeFilter(user), "{dn}", ldap.EscapeFilter(dn)).Replace(filter)
}
