package mirror

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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

// serveUpload answers the blob upload endpoint, /v2/<name>/blobs/uploads/[<id>]:
//
//	POST               start a session; with ?mount=&from=, mount instead;
//	                   with ?digest=, a monolithic upload of the body
//	PATCH <id>         append a chunk (Content-Range "start-end", or none to stream)
//	PUT <id>?digest=   append the last chunk, if any, verify and store
//	GET <id>           the session's progress, for resuming
//	DELETE <id>        cancel
func (m *Mirror) serveUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	if hr.uploadID == "" {
		if r.Method != http.MethodPost {
			return newError(codeUnsupported, "%s is not supported on the upload endpoint", r.Method)
		}
		return m.startUpload(w, r, hr)
	}
	switch r.Method {
	case http.MethodPatch:
		return m.patchUpload(w, r, hr)
	case http.MethodPut:
		return m.finishUpload(w, r, hr)
	case http.MethodGet, http.MethodHead:
		return m.uploadStatus(w, r, hr)
	case http.MethodDelete:
		return m.cancelUpload(w, r, hr)
	}
	return newError(codeUnsupported, "%s is not supported on an upload", r.Method)
}

func (m *Mirror) startUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	ctx := r.Context()
	store := m.hosted.store
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		if served, err := m.mountBlob(w, r, hr, mount); served || err != nil {
			return err
		}
	}
	var want digest.Digest
	if v := q.Get("digest"); v != "" {
		d, err := parseDigest(v)
		if err != nil {
			return err
		}
		want = d
	}
	user := clientOf(r.Context()).user
	id, err := store.StartUserUpload(ctx, hr.hostedName, user, m.hosted.uploads.MaxSessions)
	if err != nil {
		return quotaErr(err)
	}
	if want != "" {
		return m.monolithicUpload(w, r, hr, id, want)
	}
	setUploadHeaders(w, hr, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mountBlob links a blob into the repository from the repository the
// client names in from, when that repository holds it and the client may
// read it (see mayMount). Otherwise it reports false and the client gets
// an upload session instead, as the distribution spec asks.
func (m *Mirror) mountBlob(w http.ResponseWriter, r *http.Request, hr hostedRequest, mount string) (bool, error) {
	d, err := parseDigest(mount)
	if err != nil {
		return true, err
	}
	if may, err := m.mayMount(r.Context(), r.URL.Query().Get("from"), d); !may || err != nil {
		return err != nil, err
	}
	user := clientOf(r.Context()).user
	_, err = m.hosted.store.LinkUserBlob(r.Context(), hr.hostedName, user, d, m.hosted.uploads.MaxStorage)
	if isQuota(err) {
		return true, quotaErr(err)
	}
	if hostedNotFound(err) {
		return false, nil
	} else if err != nil {
		return true, err
	}
	blobCreated(w, hr, d)
	return true, nil
}

// monolithicUpload stores the body of a POST that named its digest.
func (m *Mirror) monolithicUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest, id string, d digest.Digest) error {
	ctx := r.Context()
	store := m.hosted.store
	if _, err := m.writeBody(r, hr, id, 0); err != nil {
		_ = store.CancelUpload(ctx, hr.hostedName, id)
		return err
	}
	return m.commitUpload(w, r, hr, id, d)
}

func (m *Mirror) patchUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	size, err := m.appendChunk(w, r, hr)
	if err != nil {
		return err
	}
	setUploadHeaders(w, hr, hr.uploadID, size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (m *Mirror) finishUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	d, err := parseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		return err
	}
	if r.ContentLength != 0 || r.Header.Get("Content-Range") != "" {
		if _, err := m.appendChunk(w, r, hr); err != nil {
			return err
		}
	}
	return m.commitUpload(w, r, hr, hr.uploadID, d)
}

func (m *Mirror) commitUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest, id string, d digest.Digest) error {
	user := clientOf(r.Context()).user
	_, err := m.hosted.store.CommitUserUpload(r.Context(), hr.hostedName, id, user, d, m.hosted.uploads.MaxStorage)
	var mismatch interface{ ContentDigest() digest.Digest }
	switch {
	case isQuota(err):
		return quotaErr(err)
	case errors.As(err, &mismatch):
		return &Error{Code: codeDigestInvalid, Err: err,
			Message: "the uploaded content hashes to " + mismatch.ContentDigest().String() + ", not " + d.String() + "; nothing was stored"}
	case hostedNotFound(err):
		return &Error{Code: codeBlobUploadUnknown, Message: "no such upload", Err: err}
	case err != nil:
		return err
	}
	blobCreated(w, hr, d)
	return nil
}

// appendChunk writes the request body to the upload, at the offset its
// Content-Range names or else where the upload ends, and returns the new size.
func (m *Mirror) appendChunk(w http.ResponseWriter, r *http.Request, hr hostedRequest) (int64, error) {
	ctx := r.Context()
	store := m.hosted.store
	size, err := store.UploadSize(ctx, hr.hostedName, hr.uploadID)
	if err != nil {
		return 0, uploadErr(err)
	}
	offset := size
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, err := parseContentRange(cr)
		if err != nil {
			return 0, err
		}
		if r.ContentLength >= 0 && end-start+1 != r.ContentLength {
			return 0, newError(codeSizeInvalid, "Content-Range %q does not match Content-Length %d", truncate(cr), r.ContentLength)
		}
		offset = start
	}
	newSize, err := m.writeBody(r, hr, hr.uploadID, offset)
	var offsetErr interface{ UploadSize() int64 }
	if errors.As(err, &offsetErr) {
		setUploadHeaders(w, hr, hr.uploadID, offsetErr.UploadSize())
		return 0, &Error{Code: codeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable, Err: err,
			Message: "chunks must be sent in order: the upload has " + strconv.FormatInt(offsetErr.UploadSize(), 10) + " bytes"}
	}
	if err != nil {
		return 0, uploadErr(err)
	}
	return newSize, nil
}

func (m *Mirror) uploadStatus(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	size, err := m.hosted.store.UploadSize(r.Context(), hr.hostedName, hr.uploadID)
	if err != nil {
		return uploadErr(err)
	}
	setUploadHeaders(w, hr, hr.uploadID, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (m *Mirror) cancelUpload(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	if err := m.hosted.store.CancelUpload(r.Context(), hr.hostedName, hr.uploadID); err != nil {
		return uploadErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// writeBody appends the request body to upload id at offset and returns
// the upload's new size. A body that would take the upload past the size
// cap is refused, before it is read when its length is known, and the
// upload is discarded.
func (m *Mirror) writeBody(r *http.Request, hr hostedRequest, id string, offset int64) (int64, error) {
	limit := m.hosted.uploads.MaxUploadSize
	body := io.Reader(r.Body)
	if limit >= 0 {
		if offset > limit || r.ContentLength > limit-offset {
			return 0, m.refuseOversize(r.Context(), hr, id, limit)
		}
		body = &cappedReader{r: r.Body, left: limit - offset}
	}
	size, err := m.hosted.store.WriteUpload(r.Context(), hr.hostedName, id, offset, body)
	if errors.Is(err, errUploadTooLarge) {
		return 0, m.refuseOversize(r.Context(), hr, id, limit)
	}
	return size, err
}

// refuseOversize discards an upload that outgrew the size cap.
func (m *Mirror) refuseOversize(ctx context.Context, hr hostedRequest, id string, limit int64) error {
	err := m.hosted.store.CancelUpload(context.WithoutCancel(ctx), hr.hostedName, id)
	if err != nil && !hostedNotFound(err) {
		return err
	}
	return &Error{Code: codeSizeInvalid, Status: http.StatusRequestEntityTooLarge, Err: err,
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
		return &Error{Code: codeDenied, Message: q.QuotaExceeded(), Err: err}
	}
	return err
}

func uploadErr(err error) error {
	if hostedNotFound(err) {
		return &Error{Code: codeBlobUploadUnknown, Message: "no such upload, or it expired", Err: err}
	}
	return err
}

// setUploadHeaders tells the client where the session is and how much it
// holds. Range is inclusive, so an empty session says "0-0", as
// distribution does; clients read it as the offset of their next chunk
// minus one.
func setUploadHeaders(w http.ResponseWriter, hr hostedRequest, id string, size int64) {
	h := w.Header()
	h.Set("Location", "/v2/"+hr.name+"/blobs/uploads/"+id)
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", "0-"+strconv.FormatInt(max(size-1, 0), 10))
	h.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, hr hostedRequest, d digest.Digest) {
	h := w.Header()
	h.Set("Location", blobLocation(hr.name, d))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// parseContentRange parses the Content-Range of a chunk: "start-end",
// inclusive, as the distribution spec writes it; "bytes start-end/size", the
// HTTP form some clients send, is accepted too.
func parseContentRange(s string) (start, end int64, err error) {
	v := strings.TrimPrefix(strings.TrimSpace(s), "bytes ")
	v, _, _ = strings.Cut(v, "/")
	first, last, ok := strings.Cut(v, "-")
	if ok {
		start, err = parseOffset(first)
		if err == nil {
			end, err = parseOffset(last)
		}
	}
	if !ok || err != nil || end < start {
		return 0, 0, &Error{Code: codeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable,
			Message: "invalid Content-Range " + strconv.Quote(truncate(s))}
	}
	return start, end, nil
}
