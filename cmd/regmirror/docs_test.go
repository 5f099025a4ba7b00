package main

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// updateDocs rewrites the generated parts of the docs instead of checking
// them: go test ./cmd/regmirror -run TestDocs -args -update-docs
var updateDocs = flag.Bool("update-docs", false, "rewrite the generated parts of docs/ from the code")

const configurationDoc = "../../docs/configuration.md"

// Every flag of `regmirror serve` shows its environment variable and its
// default in --help.
func TestDocsServeHelpShowsEnvAndDefaultOfEveryFlag(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	if err := runAppLocked(context.Background(), app, []string{"regmirror", "serve", "--help"}); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, f := range serveFlags(t) {
		line := helpLine(help, "--"+f.Names()[0])
		if line == "" {
			t.Errorf("--%s is not in serve --help", f.Names()[0])
			continue
		}
		if len(f.GetEnvVars()) == 0 || !strings.Contains(line, "[$"+f.GetEnvVars()[0]+"]") {
			t.Errorf("--%s: help line %q names no environment variable", f.Names()[0], line)
		}
		if !strings.Contains(line, "(default: ") {
			t.Errorf("--%s: help line %q shows no default", f.Names()[0], line)
		}
	}
}

func helpLine(help, flagName string) string {
	for _, line := range strings.Split(help, "\n") {
		if fields := strings.Fields(line); len(fields) > 0 && fields[0] == flagName {
			return line
		}
	}
	return ""
}

// serveFlags are serve's flags as urfave/cli documents them, --help aside.
func serveFlags(t *testing.T) []cli.DocGenerationFlag {
	t.Helper()
	var flags []cli.DocGenerationFlag
	for _, f := range serveCommand().Flags {
		doc, ok := f.(cli.DocGenerationFlag)
		if !ok {
			t.Fatalf("flag %v cannot be documented", f.Names())
		}
		flags = append(flags, doc)
	}
	return flags
}

// The flags table of docs/configuration.md is generated from the flags.
func TestDocsConfigurationFlagsTable(t *testing.T) {
	t.Parallel()
	var table strings.Builder
	table.WriteString("| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n")
	for _, f := range serveFlags(t) {
		def := strings.Trim(f.GetDefaultText(), `"`)
		if def == "" {
			def = strings.Trim(f.GetValue(), `"`)
		}
		fmt.Fprintf(&table, "| `--%s` | `%s` | %s | %s |\n", f.Names()[0], strings.Join(f.GetEnvVars(), "`, `"),
			markdownCell(def), markdownCell(f.GetUsage()))
	}
	checkGenerated(t, configurationDoc, "serve-flags", table.String())
}

func markdownCell(s string) string {
	if s == "" {
		return "–"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// checkGenerated compares the block between <!-- name:begin --> and
// <!-- name:end --> in a doc with want, or rewrites it with -update-docs.
func checkGenerated(t *testing.T, path, name, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	before, rest, ok := strings.Cut(string(data), begin)
	got, after, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("%s has no %q ... %q block", path, strings.TrimSpace(begin), end)
	}
	if got == want {
		return
	}
	if *updateDocs {
		if err := os.WriteFile(path, []byte(before+begin+want+end+after), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the %s block of %s is out of date; run\n\tgo test ./cmd/regmirror -run TestDocs -args -update-docs\nwant:\n%s", name, path, want)
}

// docKey matches a configuration key written as the first cell of a table
// row of docs/configuration.md, e.g. "| `upstreams[].tag_ttl` |".
var docKey = regexp.MustCompile("(?m)^\\| `([a-z][a-z0-9_]*(?:\\[\\])?(?:\\.[a-z][a-z0-9_]*(?:\\[\\])?)*)` \\|")

// Every key of the config file is documented in docs/configuration.md, and
// every key documented there exists.
func TestDocsConfigurationCoversEveryKey(t *testing.T) {
	t.Parallel()
	keys := configKeys(reflect.TypeFor[Config](), "")
	data, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range docKey.FindAllStringSubmatch(string(data), -1) {
		documented = append(documented, m[1])
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("config key %s is not documented: add a row \"| `%s` | ...\" to docs/configuration.md", k, k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/configuration.md documents %s, which the config file does not have", k)
		}
	}
}

// configKeys lists the YAML keys of a config struct as dotted paths: "listen",
// "cache.max_size", "upstreams[].host". Types that decode themselves
// (sizes, ratios, durations) are leaves.
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case isLeaf(ft):
			keys = append(keys, key)
		case ft.Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft, key+".")...)
		case ft.Kind() == reflect.Slice && isStruct(ft.Elem()):
			keys = append(keys, configKeys(ft.Elem(), key+"[].")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

func isStruct(t reflect.Type) bool { return t.Kind() == reflect.Struct && !isLeaf(t) }

func isLeaf(t reflect.Type) bool {
	if t == reflect.TypeFor[time.Duration]() || t == reflect.TypeFor[time.Time]() {
		return true
	}
	p := reflect.PointerTo(t)
	return p.Implements(reflect.TypeFor[yaml.Unmarshaler]()) || p.Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
}

// metricDefinition finds the metrics the code defines, e.g.
// `Name: "regmirror_cache_blobs"` in a metrics.go.
var metricDefinition = regexp.MustCompile(`Name:\s*"(regmirror_[a-z_]+)"`)

// metricReference finds metric names in docs and PromQL; histogram series
// (_bucket, _count, _sum) are reduced to their family by definedMetric.
var metricReference = regexp.MustCompile(`\bregmirror_[a-z_]+\b`)

// Every metric the code defines is documented in docs/metrics.md, and the
// docs, the Grafana dashboard and the alerting rules name only metrics that
// exist.
func TestDocsMetricsMatchTheCode(t *testing.T) {
	t.Parallel()
	defined := definedMetrics(t, "../..")
	if len(defined) < 20 {
		t.Fatalf("found only %d metric definitions: is the source scan broken?", len(defined))
	}
	docs, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range defined {
		if !strings.Contains(string(docs), "`"+name+"`") {
			t.Errorf("metric %s is not documented in docs/metrics.md", name)
		}
	}
	dashboard, err := os.ReadFile("../../scripts/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := json.Unmarshal(dashboard, &parsed); err != nil {
		t.Fatalf("scripts/grafana-dashboard.json is not JSON: %v", err)
	}
	texts := map[string]string{"docs/metrics.md": string(docs), "scripts/grafana-dashboard.json": string(dashboard)}
	for _, file := range []string{"deploy/prometheus/regmirror-rules.yaml", "deploy/prometheus/regmirror-rules.test.yaml"} {
		rules, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Fatal(err)
		}
		texts[file] = string(rules)
	}
	for file, text := range texts {
		for _, name := range metricReference.FindAllString(text, -1) {
			if _, ok := definedMetric(defined, name); !ok {
				t.Errorf("%s names %s, which no code defines", file, name)
			}
		}
	}
}

// definedMetrics scans the module's non-test Go files for metric definitions.
func definedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	defined := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricDefinition.FindAllStringSubmatch(string(src), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return defined
}

// definedMetric maps a series name to its defined family: a histogram's
// _bucket, _count and _sum series belong to it.
func definedMetric(defined map[string]bool, name string) (string, bool) {
	if defined[name] {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if family, ok := strings.CutSuffix(name, suffix); ok && defined[family] {
			return family, true
		}
	}
	return "", false
}

// securityDoc maps each guarantee to the tests that attack it.
const securityDoc = "../../docs/security.md"

// testDirs are the packages docs/security.md names tests of, by the name
// it uses, and where their sources are.
var testDirs = map[string]string{
	"cache": "../../cache", "cmd": ".", "credentials": "../../credentials", "edge": "../../internal/edge",
	"ldapauth": "../../internal/ldapauth", "mirror": "../../mirror", "ociserver": "../../internal/ociserver",
	"registryhost": "../../internal/registryhost",
	"upstream":     "../../upstream",
}

// securityTestRef matches a test named in docs/security.md, e.g.
// "`mirror.TestAttackUserOfAnotherTeam`".
var securityTestRef = regexp.MustCompile("`([a-z]+)\\.(Test[A-Za-z0-9_]+)`")

// Every test docs/security.md names as the proof of a guarantee exists.
func TestDocsSecurityNamesExistingTests(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	refs := securityTestRef.FindAllStringSubmatch(string(doc), -1)
	if len(refs) < 20 {
		t.Fatalf("docs/security.md names %d tests; the table lost its proofs", len(refs))
	}
	sources := map[string]string{}
	for _, ref := range refs {
		pkg, name := ref[1], ref[2]
		dir, ok := testDirs[pkg]
		if !ok {
			t.Errorf("docs/security.md names %s.%s, a package this test does not know", pkg, name)
			continue
		}
		if _, ok := sources[pkg]; !ok {
			sources[pkg] = readTestSources(t, dir)
		}
		if !strings.Contains(sources[pkg], "func "+name+"(") {
			t.Errorf("docs/security.md names %s.%s, which does not exist", pkg, name)
		}
	}
}

func readTestSources(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(data)
	}
	return all.String()
}
