package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/upstream"
)

func TestFreshnessSettings(t *testing.T) {
	t.Parallel()
	type want struct {
		client            upstream.Config
		staleIfError      time.Duration
		notFoundTTL       time.Duration
		noStaleOnNotFound bool
		backgroundRefresh bool
	}
	tests := []struct {
		name string
		yaml string
		want want
	}{
		{"unset means the defaults", "", want{}},
		{"all set", `
    stale_if_error: 24h
    serve_stale_on_not_found: false
    not_found_ttl: 1m
    background_refresh: true
    dial_timeout: 1s
    response_header_timeout: 2s
    timeout: 4s
    retries: 1
    breaker_threshold: 5
    breaker_cooldown: 1m
    breaker_window: 2m
    breaker_min_requests: 50
    breaker_failure_ratio: 0.8`, want{
			client: upstream.Config{DialTimeout: time.Second, ResponseHeaderTimeout: 2 * time.Second, Timeout: 4 * time.Second,
				Retries: 1, BreakerThreshold: 5, BreakerCooldown: time.Minute,
				BreakerWindow: 2 * time.Minute, BreakerMinRequests: 50, BreakerFailureRatio: 0.8},
			staleIfError: 24 * time.Hour, notFoundTTL: time.Minute, noStaleOnNotFound: true, backgroundRefresh: true,
		}},
		{"explicit zeros turn things off", `
    stale_if_error: 0s
    not_found_ttl: 0s
    retries: 0
    breaker_threshold: 0`, want{
			client:       upstream.Config{Retries: -1, BreakerThreshold: -1},
			staleIfError: -1, notFoundTTL: -1,
		}},
		{"serve_stale_on_not_found: true is the default", "\n    serve_stale_on_not_found: true", want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(writeConfig(t, "upstreams:\n  - host: docker.io"+tt.yaml+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			cfg = cfg.withDefaults()
			if err := cfg.validate(); err != nil {
				t.Fatal(err)
			}
			u := cfg.Upstreams[0]
			tt.want.client.Host, tt.want.client.URL = "docker.io", "https://registry-1.docker.io"
			got := want{
				client:            u.clientConfig(),
				staleIfError:      u.staleIfError(),
				notFoundTTL:       u.notFoundTTL(),
				noStaleOnNotFound: u.noStaleOnNotFound(),
				backgroundRefresh: u.BackgroundRefresh,
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("settings\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestFreshnessSettingsValidated(t *testing.T) {
	t.Parallel()
	tests := []struct{ yaml, wantErr string }{
		{"timeout: -1s", "timeout must not be negative"},
		{"dial_timeout: -1s", "dial_timeout must not be negative"},
		{"stale_if_error: -1h", "stale_if_error must not be negative (0s: never serve stale)"},
		{"not_found_ttl: -1s", "not_found_ttl must not be negative"},
		{"retries: -1", "retries must not be negative"},
		{"breaker_threshold: -2", "breaker_threshold must not be negative"},
		{"breaker_cooldown: -1s", "breaker_cooldown must not be negative"},
		{"breaker_window: -1s", "breaker_window must not be negative"},
		{"breaker_min_requests: -1", "breaker_min_requests must not be negative"},
		{"breaker_failure_ratio: 1.5", "breaker_failure_ratio must be between 0 and 1"},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(writeConfig(t, "upstreams:\n  - host: docker.io\n    "+tt.yaml+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.withDefaults().validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
