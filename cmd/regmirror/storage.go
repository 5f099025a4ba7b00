package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/cache/bucket"
	"github.com/regmirror/regmirror/cache/s3blobs"
	"github.com/regmirror/regmirror/cache/s3janitor"
	"github.com/regmirror/regmirror/internal/admin"
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

// newBucketJanitor makes the janitor of the bucket's budget, nil without
// a bucket or a budget. It spares what this replica's cache keeps: pushed
// content, and the pinned images it holds (each replica prefetches the
// same pins, so the one running the janitor holds them too).
func newBucketJanitor(b *bucket.Bucket, cfg Config, keep *bucketKeep, reg prometheus.Registerer, log *slog.Logger) (*s3janitor.Janitor, error) {
	if b == nil || cfg.Storage.S3.MaxSize == 0 {
		return nil, nil
	}
	j, err := b.NewJanitor(s3janitor.Options{ReplicaID: cfg.Cluster.Self, MaxSize: int64(cfg.Storage.S3.MaxSize),
		Keep: keep.keeps, Registerer: reg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("storage.s3.max_size: %w", err)
	}
	return j, nil
}

// runBucketJanitor runs j until ctx ends; nil runs nothing.
func runBucketJanitor(ctx context.Context, j *s3janitor.Janitor) error {
	if j == nil {
		return nil
	}
	return j.Run(ctx)
}

// bucketKeep is the set of blobs this replica's cache keeps whatever
// their age, as its evictor counts them, listed again at most every
// keepRefresh: the janitor asks about one blob at a time.
type bucketKeep struct {
	cache admin.EvictionCache
	log   *slog.Logger

	mu   sync.Mutex
	at   time.Time
	kept map[digest.Digest]bool
}

const keepRefresh = time.Minute

// keeps reports whether d must stay in the bucket. When the cache cannot
// be listed, everything stays: a janitor that evicts nothing for a while
// costs space, one that evicts pinned content costs upstream pulls.
func (k *bucketKeep) keeps(d digest.Digest) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kept == nil || time.Since(k.at) > keepRefresh {
		kept, err := k.list()
		if err != nil {
			k.log.Warn("cannot list what the cache keeps; the bucket's janitor keeps every blob this time", "error", err)
			return true
		}
		k.kept, k.at = kept, time.Now()
	}
	return k.kept[d]
}

func (k *bucketKeep) list() (map[digest.Digest]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	candidates, err := k.cache.Candidates(ctx)
	if err != nil {
		return nil, err
	}
	kept := make(map[digest.Digest]bool)
	for _, c := range candidates {
		if c.Keep && !c.Manifest {
			kept[c.Digest] = true
		}
	}
	return kept, nil
}
