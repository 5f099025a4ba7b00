package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/regmirror/regmirror/internal/keypair"
)

// listenerTLS loads the listener's certificate and key (tls_cert,
// tls_key) into a TLS config. New files are picked up at the first
// handshake after they change, and on SIGHUP (reloadListenerCert); files
// that do not load leave the certificate in use. Both nil means plain HTTP.
func listenerTLS(cfg Config, log *slog.Logger) (*tls.Config, *keypair.Pair, error) {
	if cfg.TLSCert == "" {
		return nil, nil, nil
	}
	var pair *keypair.Pair
	pair, err := keypair.Load(cfg.TLSCert, cfg.TLSKey, func(err error) { logListenerCert(pair, err, log) })
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate}, pair, nil
}

// reloadListenerCert reads the listener's certificate and key again.
func reloadListenerCert(pair *keypair.Pair, log *slog.Logger) error {
	err := pair.Reload()
	logListenerCert(pair, err, log)
	return err
}

// logListenerCert says how a reload of the listener's certificate ended.
func logListenerCert(pair *keypair.Pair, err error, log *slog.Logger) {
	if err != nil {
		log.Error("TLS certificate not reloaded: the one in use stays", "err", err)
		return
	}
	leaf := pair.Leaf()
	log.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
}
