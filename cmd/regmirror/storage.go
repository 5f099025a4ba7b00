package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/cache/bucket"
	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/mirror"
)

// StorageConfig is the `storage:` section: where blobs live besides the
// data directory. Without it, the data directory is all there is.
type StorageConfig struct {
	// S3 is a bucket the replicas of a cluster share, behind each
	// replica's local cache.
	S3 *S3Config `yaml:"s3"`
}

// S3Config is `storage.s3`: an S3-compatible bucket (AWS S3, Ceph RGW,
// MinIO, SeaweedFS, versitygw) that the replicas share. Each replica's
// data directory stays its local cache in front of it.
type S3Config struct {
	// Endpoint is host:port (HTTPS), or an http:// or https:// URL.
	Endpoint string `yaml:"endpoint"`
	// Bucket must exist.
	Bucket string `yaml:"bucket"`
	// Region is the bucket's region; empty asks the server.
	Region string `yaml:"region"`
	// Prefix goes before every key, so that one bucket can serve more
	// than one cluster.
	Prefix string `yaml:"prefix"`
	// AccessKeyID with SecretAccessKey or SecretAccessKeyFile are static
	// credentials; with none of them set, the AWS chain is asked (the
	// environment, the shared credentials file, the IAM role).
	AccessKeyID         string `yaml:"access_key_id"`
	SecretAccessKey     string `yaml:"secret_access_key"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	// MaxSize is the budget of the bucket's blobs; unset is unbounded.
	MaxSize Size `yaml:"max_size"`
}

func (c StorageConfig) validate(cl ClusterConfig) error {
	s := c.S3
	if s == nil {
		return nil
	}
	var errs []error
	if s.Endpoint == "" {
		errs = append(errs, keyErrorf("storage.s3.endpoint", "storage.s3.endpoint is required: the S3 server, e.g. https://s3.eu-west-1.amazonaws.com"))
	}
	if s.Bucket == "" {
		errs = append(errs, keyErrorf("storage.s3.bucket", "storage.s3.bucket is required"))
	}
	if s.SecretAccessKey != "" && s.SecretAccessKeyFile != "" {
		errs = append(errs, keyErrorf("storage.s3.secret_access_key_file", "storage.s3: set secret_access_key or secret_access_key_file, not both"))
	}
	hasSecret := s.SecretAccessKey != "" || s.SecretAccessKeyFile != ""
	if (s.AccessKeyID != "") != hasSecret {
		errs = append(errs, keyErrorf("storage.s3.access_key_id", "storage.s3: access_key_id and a secret access key go together; leave both out to use the AWS credential chain"))
	}
	if !cl.enabled() {
		errs = append(errs, keyErrorf("storage.s3", "storage.s3 needs a cluster section: the replicas sharing the bucket must know one another (cluster.self, cluster.peers or cluster.dns)"))
	}
	return errors.Join(errs...)
}

// fileErrors reports the secret file the daemon could not read, for
// config check.
func (c StorageConfig) fileErrors() []error {
	if c.S3 == nil || c.S3.SecretAccessKeyFile == "" {
		return nil
	}
	if _, err := c.S3.secretAccessKey(); err != nil {
		return []error{err}
	}
	return nil
}

// secretAccessKey is the inline secret, or the file's. Errors name the
// file, never what it holds.
func (c S3Config) secretAccessKey() (string, error) {
	if c.SecretAccessKeyFile == "" {
		return c.SecretAccessKey, nil
	}
	data, err := os.ReadFile(c.SecretAccessKeyFile)
	if err != nil {
		return "", keyErrorf("storage.s3.secret_access_key_file", "storage.s3.secret_access_key_file: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// s3MaxRetries is how often a bucket request is tried: a bucket that is
// down must turn a miss into a 503 within seconds, not after minio's ten
// tries with growing pauses.
const s3MaxRetries = 2

// openBucket connects to the bucket of cfg, nil when there is none. The
// replica names itself in leases by its cluster URL.
func openBucket(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*bucket.Bucket, error) {
	s := cfg.Storage.S3
	if s == nil {
		return nil, nil
	}
	secret, err := s.secretAccessKey()
	if err != nil {
		return nil, err
	}
	// The bucket's spool files, beside the cache and on its filesystem.
	spool := filepath.Join(cfg.DataDir, "s3spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("storage.s3: %w", err)
	}
	b, err := bucket.New(ctx, bucket.Options{
		Blobs: s3blobs.Options{Endpoint: s.Endpoint, Bucket: s.Bucket, Region: s.Region, Prefix: s.Prefix,
			AccessKeyID: s.AccessKeyID, SecretAccessKey: secret, SpoolDir: spool, MaxRetries: s3MaxRetries, Logger: log},
		Holder:     cfg.Cluster.Self,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("storage.s3: %w", err)
	}
	return b, nil
}

// sharedBlobsOf is b as the cache uses it; nil when there is none.
func sharedBlobsOf(b *bucket.Bucket) cache.SharedBlobs {
	if b == nil {
		return nil
	}
	return b
}

// bucketOf is b as the mirror uses it; nil when there is none.
func bucketOf(b *bucket.Bucket) mirror.Bucket {
	if b == nil {
		return nil
	}
	return b
}
