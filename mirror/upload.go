package mirror

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/dustin/go-humanize"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// Defaults of UploadLimits: generous for real images, small enough that
// one user cannot fill a disk by accident or on purpose.
const (
	DefaultMaxUploadSize     int64 = 10 << 30
	DefaultMaxUploadSessions       = 16
	DefaultMaxStoragePerUser int64 = 100 << 30
)

// UploadLimits cap what each user may push. A refused upload is discarded
// whole: nothing of it stays on disk. The zero value means the defaults; a
// negative field means no cap.
type UploadLimits struct {
	// MaxUploadSize caps the size of one blob; larger uploads are refused
	// with SIZE_INVALID (413). Zero means DefaultMaxUploadSize.
	MaxUploadSize int64
	// MaxSessions caps a user's open upload sessions; one more is refused
	// with DENIED (403). Zero means DefaultMaxUploadSessions.
	MaxSessions int
	// MaxStorage caps the bytes of the stored blobs a user pushed; an upload
	// that would pass it is refused with DENIED (403). Blobs count once per
	// user, until no repository holds them. Zero means DefaultMaxStoragePerUser.
	MaxStorage int64
}

func (l UploadLimits) withDefaults() UploadLimits {
	if l.MaxUploadSize == 0 {
		l.MaxUploadSize = DefaultMaxUploadSize
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = DefaultMaxUploadSessions
	}
	if l.MaxStorage == 0 {
		l.MaxStorage = DefaultMaxStoragePerUser
	}
	return l
}

// HostedQuotas keeps the accounts UploadLimits are checked against: who
// opened each upload session and how many bytes each user's pushes hold.
// A check and what it allows happen atomically per user.
type HostedQuotas interface {
	// StartUserUpload is StartUpload for user, who may hold at most
	// maxSessions open sessions (negative: any number). One more fails with
	// an error implementing interface{ QuotaExceeded() string }.
	StartUserUpload(ctx context.Context, name, user string, maxSessions int) (id string, err error)
	// CommitUserUpload is CommitUpload that charges the blob to user, whose
	// stored pushed blobs may total at most maxStorage bytes (negative: no
	// cap). Past it, it discards the upload, stores nothing and fails with
	// an error implementing interface{ QuotaExceeded() string }.
	CommitUserUpload(ctx context.Context, name, id, user string, d digest.Digest, maxStorage int64) (int64, error)
	// LinkUserBlob is LinkBlob for a mount by user, charged to them like
	// CommitUserUpload.
	LinkUserBlob(ctx context.Context, name, user string, d digest.Digest, maxStorage int64) (int64, error)
	// PutUserManifest is HostedManifests.PutManifest for a push by user,
	// charged to them like CommitUserUpload.
	PutUserManifest(ctx context.Context, name, user string, maxStorage int64, desc ocispec.Descriptor,
		data []byte, refs []digest.Digest, subject digest.Digest, tags []string) error
}

// refuseOversize discards an upload that outgrew the size cap.
func (b hostedBackend) refuseOversize(ctx context.Context, name, id string, limit int64) error {
	err := b.store().CancelUpload(context.WithoutCancel(ctx), name, id)
	if err != nil && !hostedNotFound(err) {
		return err
	}
	return &Error{Code: ociserver.CodeSizeInvalid, Status: http.StatusRequestEntityTooLarge, Err: err,
		Message: "a blob may have at most " + humanize.IBytes(uint64(limit)) + " on this mirror; the upload was discarded"}
}

var errUploadTooLarge = errors.New("upload exceeds the size cap")

// cappedReader reads at most left bytes of r, and fails with
// errUploadTooLarge when r holds more.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var probe [1]byte
		n, err := c.r.Read(probe[:])
		if n > 0 {
			return 0, errUploadTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// isQuota reports whether err is a user's quota refusing an upload.
func isQuota(err error) bool {
	var q interface{ QuotaExceeded() string }
	return errors.As(err, &q)
}

// quotaErr answers a quota's refusal with DENIED, saying which cap it hit.
func quotaErr(err error) error {
	var q interface{ QuotaExceeded() string }
	if errors.As(err, &q) {
		return &Error{Code: ociserver.CodeDenied, Message: q.QuotaExceeded(), Err: err}
	}
	return err
}

func uploadErr(err error) error {
	if hostedNotFound(err) {
		return &Error{Code: ociserver.CodeBlobUploadUnknown, Message: "no such upload, or it expired", Err: err}
	}
	return err
}
