package mirror

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

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
	id, err := store.StartUpload(ctx, hr.hostedName)
	if err != nil {
		return err
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
	if _, err := m.hosted.store.LinkBlob(r.Context(), hr.hostedName, d); hostedNotFound(err) {
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
	if _, err := store.WriteUpload(ctx, hr.hostedName, id, 0, r.Body); err != nil {
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
	_, err := m.hosted.store.CommitUpload(r.Context(), hr.hostedName, id, d)
	var mismatch interface{ ContentDigest() digest.Digest }
	switch {
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
	newSize, err := store.WriteUpload(ctx, hr.hostedName, hr.uploadID, offset, r.Body)
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
