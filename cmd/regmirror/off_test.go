package main

import (
	"errors"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// `0` is the one way to turn a setting off: the counts that used to be
// turned off with a negative number take it too (and still read a
// negative number the same), and a key left out keeps its default.
func TestZeroTurnsCountsOff(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(writeConfig(t, `upstreams:
  - host: docker.io
    max_concurrent_fetches: 0
  - host: ghcr.io
    max_concurrent_fetches: -1
  - host: quay.io
connections:
  max: 0
notifications:
  endpoints:
    - url: https://hooks.example/a
      retries: 0
    - url: https://hooks.example/b
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.withDefaults().validate(); err != nil {
		t.Fatal(err)
	}
	ups := cfg.Upstreams
	if !ups[0].MaxConcurrentFetches.off() || !ups[1].MaxConcurrentFetches.off() || ups[2].MaxConcurrentFetches != 0 {
		t.Errorf("max_concurrent_fetches 0, -1, unset = %d, %d, %d; want off, off, the default",
			ups[0].MaxConcurrentFetches, ups[1].MaxConcurrentFetches, ups[2].MaxConcurrentFetches)
	}
	if got := limit(int(cfg.Connections.Max), defaultMaxConnections); got != 0 {
		t.Errorf("connections.max: 0 gives a cap of %d, want none", got)
	}
	if got := limit(int(cfg.Connections.MaxPerClient), defaultMaxConnectionsPerClient); got != defaultMaxConnectionsPerClient {
		t.Errorf("connections.max_per_client unset gives a cap of %d, want the default", got)
	}
	eps := cfg.Notifications.Endpoints
	if !eps[0].Retries.off() || eps[1].Retries != 0 {
		t.Errorf("retries 0, unset = %d, %d; want off, the default", eps[0].Retries, eps[1].Retries)
	}
}

// `0` on a number that cannot be off is refused at its line rather than
// quietly read as the default; where off is the default (cache.max_size),
// `0` says both.
func TestZeroOnASettingThatCannotBeOff(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `upstreams:
  - host: docker.io
    tag_ttl: 0s
    stale_if_error: 0s
    breaker_min_requests: 0
miss_limits:
  total_rate: 0
cache:
  max_size: 0
  high_watermark: 0%
  min_free_disk: 0
connections:
  body_idle_timeout: 0s
`)
	cfg, file, err := readConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	file.add(cfg.withDefaults().validate())
	var problems *configErrors
	if !errors.As(file.err(), &problems) {
		t.Fatal("no problem found")
	}
	want := map[int]string{
		3:  "upstreams[0].tag_ttl: 0s would turn it off",
		5:  "upstreams[0].breaker_min_requests: 0 would turn it off",
		7:  "miss_limits.total_rate: 0 would turn it off",
		10: "cache.high_watermark: 0% would turn it off",
		13: "connections.body_idle_timeout: 0s would turn it off",
	}
	for _, p := range problems.problems {
		if w, ok := want[p.line]; !ok || !strings.Contains(p.err.Error(), w) {
			t.Errorf("line %d: %v; want only %v", p.line, p.err, want)
		}
		delete(want, p.line)
	}
	for line, w := range want {
		t.Errorf("no problem %q at line %d", w, line)
	}
}

// The effective configuration writes off as 0, and reads back the same.
func TestEffectiveConfigurationWritesOffAsZero(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(writeConfig(t, "connections:\n  max_per_client: -1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := writeEffective(&out, cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "max_per_client: 0\n") {
		t.Errorf("effective configuration:\n%s\nwant max_per_client: 0", out.String())
	}
	again, err := loadConfig(writeConfig(t, out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if again.Connections != cfg.Connections {
		t.Errorf("read back as %+v, want %+v", again.Connections, cfg.Connections)
	}
}

// offRow finds what `0` means in a row of docs/configuration.md.
var offRow = regexp.MustCompile("`0s?`: ")

// The rows of docs/configuration.md say what `0` means exactly for the
// numbers that can be off, so that the one convention is documented where
// it applies and nowhere else.
func TestDocsSayWhereZeroTurnsOff(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := docKey.FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	for key, canBeOff := range numbersCanBeOff(reflect.TypeFor[Config](), "") {
		row, ok := rows[key]
		if !ok {
			continue // TestDocsConfigurationCoversEveryKey reports it
		}
		if says := offRow.MatchString(row); says != canBeOff {
			t.Errorf("%s: row says what `0` means: %v; the setting can be off: %v", key, says, canBeOff)
		}
	}
}

// numbersCanBeOff maps the numeric settings under typ, as documented
// ("upstreams[].retries"), to whether `0` turns them off.
func numbersCanBeOff(typ reflect.Type, prefix string) map[string]bool {
	out := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := yamlKey(f)
		if !f.IsExported() || name == "-" {
			continue
		}
		key, ft := prefix+name, f.Type
		pointer := ft.Kind() == reflect.Pointer
		if pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeFor[Count]():
			out[key] = true
		case isPlainNumber(ft):
			out[key] = pointer || slices.Contains(zeroIsDefault, key)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
			maps.Copy(out, numbersCanBeOff(ft, key+"."))
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			maps.Copy(out, numbersCanBeOff(ft.Elem(), key+"[]."))
		}
	}
	return out
}
