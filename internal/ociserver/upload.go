package ociserver

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The blob upload protocol: POST opens a session (or mounts a blob, or
// takes the whole blob at once with ?digest=), PATCH appends chunks in
// order, PUT ?digest= commits, GET reports progress, DELETE cancels.

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, req Request) error {
	if req.UploadID != "" {
		return NewError(CodeUnsupported, "POST is not supported on an upload")
	}
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d, err := ParseDigest(mount)
		if err != nil {
			return err
		}
		mounted, err := s.backend.MountBlob(ctx, req.Repo(), q.Get("from"), d)
		if err != nil {
			return err
		}
		if mounted {
			blobCreated(w, req.Name, d)
			return nil
		}
	}
	var want digest.Digest
	if v := q.Get("digest"); v != "" {
		d, err := ParseDigest(v)
		if err != nil {
			return err
		}
		want = d
	}
	id, err := s.backend.StartUpload(ctx, req.Repo())
	if err != nil {
		return err
	}
	if want != "" {
		return s.monolithicUpload(w, r, req, id, want)
	}
	setUploadHeaders(w, req.Name, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// monolithicUpload stores a whole blob sent with the POST that opened its
// session, the way oras and the conformance suite push small blobs.
func (s *Server) monolithicUpload(w http.ResponseWriter, r *http.Request, req Request, id string, d digest.Digest) error {
	if _, err := s.backend.WriteUpload(r.Context(), req.Repo(), id, 0, r.ContentLength, r.Body); err != nil {
		_ = s.backend.CancelUpload(r.Context(), req.Repo(), id)
		return err
	}
	req.UploadID = id
	return s.commitUpload(w, r, req, d)
}

func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, req Request) error {
	if req.UploadID == "" {
		return NewError(CodeUnsupported, "PATCH is not supported on the upload endpoint")
	}
	size, err := s.appendChunk(w, r, req)
	if err != nil {
		return err
	}
	setUploadHeaders(w, req.Name, req.UploadID, size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// finishUpload commits an upload, after appending the last chunk when the
// PUT carries one.
func (s *Server) finishUpload(w http.ResponseWriter, r *http.Request, req Request) error {
	if req.UploadID == "" {
		return NewError(CodeUnsupported, "PUT is not supported on the upload endpoint")
	}
	d, err := ParseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		return err
	}
	if r.ContentLength != 0 || r.Header.Get("Content-Range") != "" {
		if _, err := s.appendChunk(w, r, req); err != nil {
			return err
		}
	}
	return s.commitUpload(w, r, req, d)
}

func (s *Server) commitUpload(w http.ResponseWriter, r *http.Request, req Request, d digest.Digest) error {
	if err := s.backend.CommitUpload(r.Context(), req.Repo(), req.UploadID, d); err != nil {
		return err
	}
	blobCreated(w, req.Name, d)
	return nil
}

// appendChunk writes the request body at the offset its Content-Range
// names, or at the end of the upload, and returns the upload's new size.
func (s *Server) appendChunk(w http.ResponseWriter, r *http.Request, req Request) (int64, error) {
	ctx := r.Context()
	offset, err := s.backend.UploadSize(ctx, req.Repo(), req.UploadID)
	if err != nil {
		return 0, err
	}
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, err := parseContentRange(cr)
		if err != nil {
			return 0, err
		}
		if r.ContentLength >= 0 && end-start+1 != r.ContentLength {
			return 0, NewError(CodeSizeInvalid, "Content-Range %q does not match Content-Length %d", Truncate(cr), r.ContentLength)
		}
		offset = start
	}
	newSize, err := s.backend.WriteUpload(ctx, req.Repo(), req.UploadID, offset, r.ContentLength, r.Body)
	var offsetErr interface{ UploadSize() int64 }
	if errors.As(err, &offsetErr) {
		setUploadHeaders(w, req.Name, req.UploadID, offsetErr.UploadSize())
		return 0, &Error{Code: CodeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable, Err: err,
			Message: "chunks must be sent in order: the upload has " + strconv.FormatInt(offsetErr.UploadSize(), 10) + " bytes"}
	}
	return newSize, err
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, req Request) error {
	if req.UploadID == "" {
		return NewError(CodeUnsupported, "%s is not supported on the upload endpoint", r.Method)
	}
	size, err := s.backend.UploadSize(r.Context(), req.Repo(), req.UploadID)
	if err != nil {
		return err
	}
	setUploadHeaders(w, req.Name, req.UploadID, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, req Request) error {
	if req.UploadID == "" {
		return NewError(CodeUnsupported, "DELETE is not supported on the upload endpoint")
	}
	if err := s.backend.CancelUpload(r.Context(), req.Repo(), req.UploadID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setUploadHeaders tells the client where the upload continues and how
// much of it is stored.
func setUploadHeaders(w http.ResponseWriter, name, id string, size int64) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", "0-"+strconv.FormatInt(max(size-1, 0), 10))
	h.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	h := w.Header()
	h.Set("Location", blobLocation(name, d))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// parseContentRange parses a chunk's Content-Range, "start-end" with or
// without the "bytes " unit and a "/size" suffix.
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
		return 0, 0, &Error{Code: CodeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable,
			Message: "invalid Content-Range " + strconv.Quote(Truncate(s))}
	}
	return start, end, nil
}
