package main

import (
	"fmt"
	"time"

	"github.com/regmirror/regmirror/upstream"
)

// The settings of UpstreamConfig for tag freshness and upstream failures
// are pointers where an explicit zero means "off" and differs from unset
// (the default): stale_if_error: 0s never serves stale, retries: 0 never
// retries. The mirror and upstream packages say "off" with negative values.

// clientConfig is what the upstream client needs of u.
func (u UpstreamConfig) clientConfig() upstream.Config {
	return upstream.Config{
		Host:                  u.Host,
		URL:                   u.URL,
		DialTimeout:           u.DialTimeout,
		ResponseHeaderTimeout: u.ResponseHeaderTimeout,
		Timeout:               u.Timeout,
		Retries:               zeroMeansOff(u.Retries),
		BreakerThreshold:      zeroMeansOff(u.BreakerThreshold),
		BreakerCooldown:       u.BreakerCooldown,
		BreakerWindow:         u.BreakerWindow,
		BreakerMinRequests:    u.BreakerMinRequests,
		BreakerFailureRatio:   u.BreakerFailureRatio,
		AuthHosts:             u.AuthHosts,
		TLS: upstream.TLSConfig{
			CAFile:             u.CAFile,
			ClientCert:         u.ClientCert,
			ClientKey:          u.ClientKey,
			InsecureSkipVerify: u.InsecureSkipVerify,
		},
		Proxy: u.Proxy,
	}
}

// staleIfError is stale_if_error as mirror.Remote.StaleIfError.
func (u UpstreamConfig) staleIfError() time.Duration { return zeroMeansOff(u.StaleIfError) }

// notFoundTTL is not_found_ttl as mirror.Remote.NotFoundTTL.
func (u UpstreamConfig) notFoundTTL() time.Duration { return zeroMeansOff(u.NotFoundTTL) }

// noStaleOnNotFound is serve_stale_on_not_found (default true), inverted
// for mirror.Remote, whose zero value is the default.
func (u UpstreamConfig) noStaleOnNotFound() bool {
	return u.ServeStaleOnNotFound != nil && !*u.ServeStaleOnNotFound
}

// zeroMeansOff maps a setting that may be unset (nil: the default, passed
// on as zero) or explicitly zero (off, passed on as -1).
func zeroMeansOff[T ~int | ~int64](v *T) T {
	switch {
	case v == nil:
		return 0
	case *v == 0:
		return -1
	}
	return *v
}

// freshnessErrors reports the invalid freshness and timeout settings of
// upstreams[i].
func (u UpstreamConfig) freshnessErrors(i int) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, keyErrorf(fmt.Sprintf("upstreams[%d].%s", i, key), "upstreams[%d] (%s): "+format, append([]any{i, u.Host}, args...)...))
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"dial_timeout", u.DialTimeout},
		{"response_header_timeout", u.ResponseHeaderTimeout},
		{"timeout", u.Timeout},
		{"breaker_cooldown", u.BreakerCooldown},
		{"breaker_window", u.BreakerWindow},
	} {
		if d.value < 0 {
			bad(d.name, "%s must not be negative (leave it out for the default)", d.name)
		}
	}
	if isNegative(u.StaleIfError) {
		bad("stale_if_error", "stale_if_error must not be negative (0s: never serve stale)")
	}
	if isNegative(u.NotFoundTTL) {
		bad("not_found_ttl", "not_found_ttl must not be negative (0s: do not remember 404s)")
	}
	if isNegative(u.Retries) {
		bad("retries", "retries must not be negative (0: never retry)")
	}
	if isNegative(u.BreakerThreshold) {
		bad("breaker_threshold", "breaker_threshold must not be negative (0: no circuit breaker)")
	}
	if u.BreakerMinRequests < 0 {
		bad("breaker_min_requests", "breaker_min_requests must not be negative (leave it out for the default)")
	}
	if u.BreakerFailureRatio < 0 || u.BreakerFailureRatio > 1 {
		bad("breaker_failure_ratio", "breaker_failure_ratio must be between 0 and 1, e.g. 0.5 (leave it out for the default)")
	}
	return errs
}

func isNegative[T int | time.Duration](v *T) bool { return v != nil && *v < 0 }
