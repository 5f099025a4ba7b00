package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Every problem validation finds in a file is reported at a line of it:
// the key at fault, or the deepest part of it that the file has.
func TestEveryValidationProblemHasALine(t *testing.T) {
	t.Parallel()
	const ldap = "auth:\n  ldap:\n    url: ldaps://ldap.example.com\n    user_base: dc=x\n"
	checkProblemsAtLines(t, []lineProblem{
		{"ldap without url", "listen: :5000\nauth:\n  ldap:\n    user_base: dc=x\n", 3, "set url"},
		{"ldap bind_dn alone", ldap + "    bind_dn: cn=reader,dc=x\n", 5, "bind_dn and bind_password_file go together"},
		{"ldap bind_password_file alone", ldap + "    bind_password_file: /run/secret\n", 5, "bind_dn and bind_password_file go together"},
		{"ldap negative timeout", ldap + "    timeout: -1s\n", 5, "must not be negative"},
		{"ldap not an ldap url", "auth:\n  ldap:\n    user_base: dc=x\n    url: https://ldap.example.com\n", 4, "want ldap://"},
		{"ldap start_tls over ldaps", ldap + "    start_tls: true\n", 5, "start_tls is for ldap://"},
		{"ldap no user_base", "auth:\n  ldap:\n    url: ldaps://ldap.example.com\n", 2, "user_base is required"},
		{"ldap broken group filter", ldap + "    group_base: dc=x\n    group_filter: \"(member={dn}\"\n", 6, "filter"},
		{"ldap bad group_base", ldap + "    group_base: \"not a dn\"\n", 5, "group_base"},
		{"cache fill_timeout", "cache:\n  max_size: 1GiB\n  fill_timeout: -1m\n", 3, "fill_timeout must not be negative"},
		{"log level", "log:\n  format: json\n  level: loud\n", 3, "log.level"},
		{"miss limits", "miss_limits:\n  total_rate: 1\n  per_client_burst: -1\n", 3, "must not be negative"},
		{"notification action", "notifications:\n  endpoints:\n    - url: https://hooks.example\n      actions: [push, fly]\n", 4, `unknown action "fly"`},
		{"prefetch image", "prefetch:\n  images:\n    - node:20\n    - \"node:[\"\n", 4, "prefetch.images"},
		{"status users without users", "status:\n  users: [alice]\n", 2, "status.users"},
		{"hosted repository glob", "hosted:\n  htpasswd: /etc/htpasswd\n  repositories: [team/*, \"team/[\"]\n", 3, `hosted.repositories: repository pattern "team/["`},
		{"hosted fall_through glob", "hosted:\n  htpasswd: /etc/htpasswd\n  fall_through:\n    - \"\"\n", 4, "hosted.fall_through"},
		{"hosted permission glob", "hosted:\n  htpasswd: /etc/htpasswd\n  permissions:\n    - repositories: [\"a/[\"]\n      users: [alice]\n      actions: [pull]\n", 4, "hosted.permissions[0].repositories"},
		{"hosted permission action", "hosted:\n  htpasswd: /etc/htpasswd\n  permissions:\n    - repositories: [team/*]\n      users: [alice]\n      actions: [pull, fly]\n", 4, `unknown action "fly"`},
		{"hosted permission to nobody", "hosted:\n  htpasswd: /etc/htpasswd\n  permissions:\n    - repositories: [team/*]\n      actions: [pull]\n", 4, "grants to nobody"},
		{"hosted previous token key alone", "hosted:\n  htpasswd: /etc/htpasswd\n  previous_token_key_file: /run/old-key\n", 3, "previous_token_key_file needs token_key_file"},
		{"token key without hosting", "listen: :5000\nhosted:\n  token_key_file: /run/key\n", 2, "set htpasswd or auth.ldap"},
		{"upstream proxy", "upstreams:\n  - host: ghcr.io\n    proxy: socks5://p:1080\n", 3, "proxy"},
	})
}

// lineProblem is a config file and the problem validation must find in it:
// text, at line.
type lineProblem struct {
	name, yaml string
	line       int
	text       string
}

// checkProblemsAtLines validates each case's file and checks that its
// problem is reported at its line, and that no problem lacks a line.
func checkProblemsAtLines(t *testing.T, cases []lineProblem) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, file, err := readConfig(writeConfig(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			file.add(cfg.withDefaults().validate())
			var problems *configErrors
			if !errors.As(file.err(), &problems) {
				t.Fatalf("no problem found in:\n%s", tt.yaml)
			}
			found := false
			for _, p := range problems.problems {
				if p.line == 0 {
					t.Errorf("a problem without a line: %v", p.err)
				}
				found = found || p.line == tt.line && strings.Contains(p.err.Error(), tt.text)
			}
			if !found {
				t.Errorf("no problem %q at line %d in:\n%v", tt.text, tt.line, fmt.Sprint(problems))
			}
		})
	}
}

// config check reads the directory's CA and bind password files too, and
// reports each at its line.
func TestConfigCheckOpensTheLDAPFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeConfig(t, fmt.Sprintf(`auth:
  ldap:
    url: ldaps://ldap.example.com
    user_base: dc=x
    bind_dn: cn=reader,dc=x
    bind_password_file: %s
    ca_file: %s
`, filepath.Join(dir, "missing-password"), filepath.Join(dir, "missing-ca.pem")))
	code, _, stderr := runExit(t, "config", "check", "--config", path)
	if code != exitConfig {
		t.Errorf("exit status %d, want %d", code, exitConfig)
	}
	if want := path + ":7: auth.ldap.ca_file: open " + dir; !strings.Contains(stderr, want) {
		t.Errorf("no %q in:\n%s", want, stderr)
	}
	if code, _, stderr := runExit(t, "config", "check", "--no-files", "--quiet", "--config", path); code != exitOK || stderr != "" {
		t.Errorf("with --no-files: exit status %d, %s", code, stderr)
	}
}
