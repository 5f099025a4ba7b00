package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

func configCommand() *cli.Command {
	// The same overrides as serve, so that a check with serve's flags and
	// environment checks what serve would run.
	flags := append(serveCommand().Flags,
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the problems, not the effective configuration"},
		&cli.BoolFlag{Name: "no-files", Usage: "check the config file alone, not the files it names (password files, certificates, CA files, htpasswd, token keys): " +
			"for a check away from the host that runs it"},
	)
	return &cli.Command{
		Name:  "config",
		Usage: "check the configuration",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "validate the config file without starting anything; print the effective configuration, secrets redacted",
			Description: "Reports every problem, each at its line of the file, and exits with status 3 if there is\n" +
				"one. It opens no listener, takes no lock on the data directory and makes no connection, but\n" +
				"it does read the files the configuration names (see --no-files). The effective configuration\n" +
				"is the file with flags and environment applied, settings left unset left out, and\n" +
				"passwords and tokens shown as " + redacted + ".",
			Flags:  flags,
			Action: runConfigCheck,
		}},
	}
}

func runConfigCheck(c *cli.Context) error {
	cfg, file, err := configFileFromCLI(c)
	if err != nil {
		return err
	}
	if !c.Bool("no-files") {
		file.add(cfg.fileErrors())
	}
	if err := file.err(); err != nil {
		return err
	}
	if c.Bool("quiet") {
		return nil
	}
	source := file.path
	if source == "" {
		source = "no config file: built-in defaults"
	}
	fmt.Fprintf(c.App.Writer, "# effective configuration (%s); unset settings take their defaults\n", source)
	return writeEffective(c.App.Writer, cfg)
}

// fileErrors reports the files the configuration names that the daemon
// could not use, each at its key.
func (c Config) fileErrors() error {
	var errs []error
	if c.TLSCert != "" && c.TLSKey != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			errs = append(errs, keyErrorf("tls_cert", "tls_cert and tls_key: %w", err))
		}
	}
	for i, u := range c.Upstreams {
		errs = append(errs, u.fileErrors(i)...)
	}
	errs = append(errs, c.Notifications.fileErrors()...)
	errs = append(errs, c.Cluster.fileErrors()...)
	errs = append(errs, c.Storage.fileErrors()...)
	if c.Auth.LDAP.enabled() {
		if _, _, err := c.Auth.LDAP.readFiles(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Hosted.enabled() {
		if _, err := loadHtpasswd(c.Hosted.Htpasswd); err != nil {
			errs = append(errs, &keyError{key: "hosted.htpasswd", err: err})
		}
	}
	if c.Hosted.enabled() || c.Auth.LDAP.enabled() {
		errs = append(errs, c.Hosted.tokenKeyErrors()...)
	}
	return errors.Join(errs...)
}

// fileErrors reports the files upstreams[i] names that the daemon could
// not use. The errors name the files, never their contents.
func (u UpstreamConfig) fileErrors(i int) []error {
	var errs []error
	bad := func(key string, err error) {
		errs = append(errs, keyErrorf(fmt.Sprintf("upstreams[%d].%s", i, key), "upstreams[%d] (%s): %s: %w", i, u.Host, key, err))
	}
	if u.PasswordFile != "" {
		if _, err := os.ReadFile(u.PasswordFile); err != nil {
			bad("password_file", err)
		}
	}
	if u.CAFile != "" {
		if pem, err := os.ReadFile(u.CAFile); err != nil {
			bad("ca_file", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("ca_file", fmt.Errorf("%s holds no PEM certificate", u.CAFile))
		}
	}
	if u.ClientCert != "" && u.ClientKey != "" {
		if _, err := tls.LoadX509KeyPair(u.ClientCert, u.ClientKey); err != nil {
			bad("client_cert", err)
		}
	}
	return errs
}

// redacted stands for a secret in the effective configuration.
const redacted = "<redacted>"

// isSecret reports whether the setting at a YAML key holds a secret
// itself (a file holding one, "password_file", is only a path): keys
// named, or ending in, password, token, secret or secret_access_key.
func isSecret(key string) bool {
	for _, word := range []string{"password", "token", "secret", "secret_access_key"} {
		if key == word || strings.HasSuffix(key, "_"+word) {
			return true
		}
	}
	return false
}

// writeEffective writes cfg as YAML without its unset settings, secrets
// redacted.
func writeEffective(w io.Writer, cfg Config) error {
	node, err := effectiveNode(reflect.ValueOf(cfg))
	if err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return fmt.Errorf("writing the effective configuration: %w", err)
	}
	return enc.Close()
}

// effectiveNode is v as a YAML node. A struct's fields at their zero
// value are left out: they mean the defaults, which the daemon applies
// where it uses them.
func effectiveNode(v reflect.Value) (*yaml.Node, error) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		v = v.Elem()
	}
	if _, marshals := v.Interface().(yaml.Marshaler); marshals || v.Kind() != reflect.Struct && !isStructSlice(v.Type()) {
		var n yaml.Node
		err := n.Encode(v.Interface())
		return &n, err
	}
	if v.Kind() == reflect.Slice {
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			item, err := effectiveNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, item)
		}
		return n, nil
	}
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" || v.Field(i).IsZero() {
			continue
		}
		key := yamlKey(f)
		value := &yaml.Node{Kind: yaml.ScalarNode, Value: redacted}
		if !isSecret(key) {
			var err error
			if value, err = effectiveNode(v.Field(i)); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, value)
	}
	return n, nil
}

func isStructSlice(t reflect.Type) bool {
	if t.Kind() != reflect.Slice {
		return false
	}
	e := t.Elem()
	for e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	return e.Kind() == reflect.Struct
}
