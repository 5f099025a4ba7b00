package main

import (
	"fmt"
	"log/slog"

	"github.com/regmirror/regmirror/upstream"
)

// tlsErrors reports the problems of upstream i's TLS and proxy settings
// that need no file to be read; upstream.New reads the files.
func (u UpstreamConfig) tlsErrors(i int) []error {
	var errs []error
	if (u.ClientCert == "") != (u.ClientKey == "") {
		errs = append(errs, keyErrorf(fmt.Sprintf("upstreams[%d].client_cert", i), "upstreams[%d] (%s): client_cert and client_key must be set together", i, u.Host))
	}
	if u.InsecureSkipVerify && u.CAFile != "" {
		errs = append(errs, keyErrorf(fmt.Sprintf("upstreams[%d].insecure_skip_verify", i), "upstreams[%d] (%s): insecure_skip_verify ignores ca_file: set one of them", i, u.Host))
	}
	if u.Proxy != "" {
		if _, err := upstream.ParseProxy(u.Proxy); err != nil {
			errs = append(errs, keyErrorf(fmt.Sprintf("upstreams[%d].proxy", i), "upstreams[%d] (%s): %w", i, u.Host, err))
		}
	}
	return errs
}

// warnInsecureUpstreams says loudly, at startup and on every reload, which
// upstreams are fetched from without verifying their certificates.
func warnInsecureUpstreams(ups []UpstreamConfig, log *slog.Logger) {
	for _, u := range ups {
		if u.InsecureSkipVerify {
			log.Warn("TLS certificate verification is OFF for this upstream (insecure_skip_verify): anyone on the path can read and change the images it serves",
				"upstream", u.Host, "url", u.URL)
		}
	}
}
