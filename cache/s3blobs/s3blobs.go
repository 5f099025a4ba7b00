package s3blobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/blobstore"
)

// Options say which bucket to use and how to reach it. Endpoint and Bucket
// are required; the zero value of every other field is the default.
type Options struct {
	// Endpoint is the server: host:port (HTTPS unless DisableTLS), or a
	// URL, http:// or https://, with no path.
	Endpoint string
	// Bucket must exist; the Store does not create it.
	Bucket string
	// Region is the bucket's region; empty asks the server.
	Region string
	// Prefix is put before every key, so that one bucket can hold more
	// than one store (a "/" is added when it does not end in one).
	Prefix string
	// AccessKeyID and SecretAccessKey are static credentials. When both
	// are empty, the AWS chain is asked instead: the environment
	// (AWS_ACCESS_KEY_ID...), the shared credentials file, then the
	// instance's or container's IAM role.
	AccessKeyID, SecretAccessKey string
	// DisableTLS talks plain HTTP to an Endpoint given as host:port.
	DisableTLS bool
	// Transport, when set, carries every request (proxies, CAs, dialers).
	Transport *http.Transport
	// SpoolDir holds the local files of blobs being written; empty is
	// os.TempDir(). They are unlinked as soon as they are made, so a
	// crash leaves none behind.
	SpoolDir string
	// PartSize is the part size of multipart uploads, which blobs larger
	// than it go up in; zero is minio's default (16 MiB). S3's minimum is
	// 5 MiB.
	PartSize uint64
	// MaxRetries is how many times a request is tried, as minio counts:
	// 1 tries once; zero is minio's default, 10, with a growing pause
	// between tries (some seconds in all when the server is down).
	MaxRetries int
	// Logger is told of the housekeeping New does; nil discards.
	Logger *slog.Logger
}

// Store keeps blobs in one bucket under one prefix. It is safe for
// concurrent use. Make one with New.
type Store struct {
	client   *minio.Client
	bucket   string
	prefix   string
	spoolDir string
	partSize uint64
}

var _ blobstore.Interface = (*Store)(nil)

// staleUploadAge is how old an incomplete multipart upload under the
// prefix must be for New to abort it: far longer than any blob takes to
// upload, so that it is one a crash left and not another replica's, in
// progress.
const staleUploadAge = time.Hour

// New connects to the bucket and checks that it exists and that the
// credentials may list it and write to it, by writing and removing a small
// object under the prefix; its error names the endpoint and the bucket.
// It checks that the spool directory takes files too. It then
// aborts the multipart uploads under the prefix that crashes left (a
// failure there is logged, not returned: it costs space, not
// correctness).
func New(ctx context.Context, opts Options) (*Store, error) {
	s, where, err := newStore(opts)
	if err != nil {
		return nil, fmt.Errorf("s3blobs: %s: %w", where, err)
	}
	if err := s.checkWritable(ctx); err != nil {
		return nil, fmt.Errorf("s3blobs: %s: %w", where, err)
	}
	if err := checkSpoolDir(s.spoolDir); err != nil {
		return nil, fmt.Errorf("s3blobs: %s: %w", where, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := s.RemoveStaleUploads(ctx, staleUploadAge)
	if err != nil {
		log.Warn("s3blobs: cannot abort stale multipart uploads", "bucket", s.bucket, "prefix", s.prefix, "err", err)
	} else if n > 0 {
		log.Info("s3blobs: aborted stale multipart uploads", "bucket", s.bucket, "prefix", s.prefix, "uploads", n)
	}
	return s, nil
}

// NewClient makes the S3 client New would make for opts, without reaching
// the server: for whatever else shares the bucket (leases, for one) with
// the same endpoint, credentials, transport and retries. Only the fields
// that say how to reach the bucket are read; Prefix, SpoolDir, PartSize
// and Logger are not. Its error names the endpoint and the bucket, never
// the credentials.
func NewClient(opts Options) (*minio.Client, error) {
	client, where, err := newClient(opts)
	if err != nil {
		return nil, fmt.Errorf("s3blobs: %s: %w", where, err)
	}
	return client, nil
}

// newStore makes the Store and its client, and describes where it points
// for errors: "bucket B at HOST".
func newStore(opts Options) (*Store, string, error) {
	client, where, err := newClient(opts)
	if err != nil {
		return nil, where, err
	}
	spool := opts.SpoolDir
	if spool == "" {
		spool = os.TempDir()
	}
	return &Store{client: client, bucket: opts.Bucket, prefix: normalPrefix(opts.Prefix), spoolDir: spool,
		partSize: opts.PartSize}, where, nil
}

// newClient makes the client of opts' bucket, and describes where it
// points for errors: "bucket B at HOST".
func newClient(opts Options) (*minio.Client, string, error) {
	host, secure, err := parseEndpoint(opts.Endpoint, opts.DisableTLS)
	where := fmt.Sprintf("bucket %q at %s", opts.Bucket, host)
	if host == "" {
		where = fmt.Sprintf("bucket %q", opts.Bucket)
	}
	if err != nil {
		return nil, where, err
	}
	if err := s3utils.CheckValidBucketName(opts.Bucket); err != nil {
		return nil, where, err
	}
	creds, err := opts.credentials()
	if err != nil {
		return nil, where, err
	}
	mopts := &minio.Options{Creds: creds, Secure: secure, Region: opts.Region, MaxRetries: opts.MaxRetries}
	if opts.Transport != nil {
		mopts.Transport = opts.Transport
	}
	client, err := minio.New(host, mopts)
	if err != nil {
		return nil, where, err
	}
	return client, where, nil
}

// parseEndpoint splits an endpoint into minio's host:port and whether to
// use TLS. The errors never quote the endpoint, which might hold
// credentials in a URL's user part.
func parseEndpoint(endpoint string, disableTLS bool) (host string, secure bool, err error) {
	if endpoint == "" {
		return "", false, errors.New("no endpoint")
	}
	if !strings.Contains(endpoint, "://") {
		if i := strings.LastIndex(endpoint, "@"); i >= 0 {
			return endpoint[i+1:], false, errors.New("the endpoint must not hold credentials")
		}
		return endpoint, !disableTLS, nil
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return "", false, errors.New("the endpoint is not a URL")
	case u.User != nil:
		return u.Host, false, errors.New("the endpoint URL must not hold credentials")
	case u.Scheme != "http" && u.Scheme != "https":
		return u.Host, false, fmt.Errorf("endpoint scheme %q: want http or https", u.Scheme)
	case strings.Trim(u.Path, "/") != "" || u.RawQuery != "":
		return u.Host, false, errors.New("the endpoint URL must have no path: give the bucket as Bucket, a key prefix as Prefix")
	}
	return u.Host, u.Scheme == "https", nil
}

// credentials are the static ones, or the AWS chain when there are none.
func (o Options) credentials() (*credentials.Credentials, error) {
	switch {
	case o.AccessKeyID == "" && o.SecretAccessKey == "":
		return credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		}), nil
	case o.AccessKeyID == "" || o.SecretAccessKey == "":
		return nil, errors.New("an access key ID needs its secret access key, and the other way round")
	}
	return credentials.NewStaticV4(o.AccessKeyID, o.SecretAccessKey, ""), nil
}

func normalPrefix(p string) string {
	if p == "" || strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}

// checkWritable checks that the bucket exists, can be listed, and takes a
// write and a removal under the prefix, outside the blobs. It lists rather
// than asks HEAD of the bucket: a HEAD's error has no body, so wrong
// credentials would look like a missing bucket or a bare "Access Denied".
func (s *Store) checkWritable(ctx context.Context) error {
	if err := s.listOne(ctx); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchBucket {
			return errors.New("the bucket does not exist")
		}
		return fmt.Errorf("listing the bucket: %w", err)
	}
	probe := s.prefix + "probe/" + randomHex()
	body := []byte("regmirror checks that it may write here; this object is removed at once\n")
	if _, err := s.client.PutObject(ctx, s.bucket, probe, bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "text/plain"}); err != nil {
		return fmt.Errorf("writing the probe object %s: %w", probe, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, probe, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("removing the probe object %s: %w", probe, err)
	}
	return nil
}

// listOne lists the first page, of one key at most, under the blobs.
func (s *Store) listOne(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.blobsPrefix(), MaxKeys: 1}) {
		return obj.Err
	}
	return nil
}

// checkSpoolDir checks that dir takes a file, so that a spool directory
// that is missing or read-only fails at startup rather than at each blob.
func checkSpoolDir(dir string) error {
	f, err := os.CreateTemp(dir, "regmirror-s3-probe-*")
	if err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Bucket is the bucket the blobs are in.
func (s *Store) Bucket() string { return s.bucket }

// Prefix is the prefix every key starts with, ending in "/" unless it is
// empty: what shares the bucket with the blobs (leases, access records)
// sits beside blobs/ under it.
func (s *Store) Prefix() string { return s.prefix }

// blobsPrefix is where the blobs are, under the store's prefix.
func (s *Store) blobsPrefix() string { return s.prefix + "blobs/" }

// key is the object key of the blob d.
func (s *Store) key(d digest.Digest) string {
	enc := d.Encoded()
	return s.blobsPrefix() + string(d.Algorithm()) + "/" + enc[:2] + "/" + enc
}

// digestOf parses a key back into the digest whose key it is.
func (s *Store) digestOf(key string) (digest.Digest, bool) {
	rest, ok := strings.CutPrefix(key, s.blobsPrefix())
	if !ok {
		return "", false
	}
	alg, rest, _ := strings.Cut(rest, "/")
	_, enc, _ := strings.Cut(rest, "/")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	if d.Validate() != nil || s.key(d) != key {
		return "", false
	}
	return d, true
}

// pathError says which operation failed on which object, as *fs.PathError
// does for files; a missing object becomes fs.ErrNotExist.
func (s *Store) pathError(op, key string, err error) error {
	if isNotFound(err) {
		err = fs.ErrNotExist
	}
	return &fs.PathError{Op: "s3 " + op, Path: "s3://" + s.bucket + "/" + key, Err: err}
}

// isNotFound reports whether err says the object does not exist. A
// missing bucket is not a missing blob: it is a broken configuration.
func isNotFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.Code == minio.NoSuchKey ||
		resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket
}
