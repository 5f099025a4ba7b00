// Package ociserver is the HTTP face of the OCI distribution API: it parses
// each request once (ParseRequest, a pure and fuzzed function), dispatches
// it through one table of endpoint kind and method, answers every blob and
// Range request with one handler and every error with one writer
// (WriteError), and asks one Backend for everything else. It knows nothing
// of caches, upstreams or storage: those are behind the Backend.
package ociserver

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Options configure a Server.
type Options struct {
	// SendTimeout bounds each write of a blob to a client, so a stuck or
	// trickling client cannot hold a connection forever. Zero means
	// DefaultSendTimeout.
	SendTimeout time.Duration
	// OnRequest, when set, hears of every request that parsed, before it
	// is served (for access logs).
	OnRequest func(ctx context.Context, req Request)
	// OnError, when set, hears of every error answered or that cut a
	// response short.
	OnError func(ctx context.Context, err error)
	// BlobBytesSent, when set, counts the blob bytes sent, by Blob.Source.
	BlobBytesSent func(source string, n int64)
}

// Server serves the distribution API over a Backend. It is safe for
// concurrent use.
type Server struct {
	backend Backend
	opts    Options
}

// New returns a Server answering from b.
func New(b Backend, opts Options) *Server {
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	return &Server{backend: b, opts: opts}
}

// handler answers one kind of request with one method.
type handler func(s *Server, w http.ResponseWriter, r *http.Request, req Request) error

// routes is the dispatch table: what each endpoint answers, by method.
var routes = map[Kind]map[string]handler{
	KindBase: {http.MethodGet: serveBase, http.MethodHead: serveBase},
	KindManifest: {http.MethodGet: (*Server).getManifest, http.MethodHead: (*Server).getManifest,
		http.MethodPut: (*Server).putManifest, http.MethodDelete: (*Server).deleteManifest},
	KindBlob: {http.MethodGet: (*Server).getBlob, http.MethodHead: (*Server).getBlob,
		http.MethodDelete: (*Server).deleteBlob},
	KindBlobUpload: {http.MethodPost: (*Server).startUpload, http.MethodPatch: (*Server).patchUpload,
		http.MethodPut: (*Server).finishUpload, http.MethodGet: (*Server).uploadStatus,
		http.MethodHead: (*Server).uploadStatus, http.MethodDelete: (*Server).cancelUpload},
	KindTags:      {http.MethodGet: (*Server).getTags, http.MethodHead: (*Server).getTags},
	KindReferrers: {http.MethodGet: (*Server).getReferrers, http.MethodHead: (*Server).getReferrers},
	KindCatalog:   {http.MethodGet: (*Server).getCatalog, http.MethodHead: (*Server).getCatalog},
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.serve(w, r); err != nil {
		s.noteError(r.Context(), err)
		WriteError(w, r, err)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) error {
	req, err := ParseRequest(r.URL)
	if err != nil {
		return err
	}
	if s.opts.OnRequest != nil {
		s.opts.OnRequest(r.Context(), req)
	}
	h, ok := routes[req.Kind][r.Method]
	if !ok {
		return NewError(CodeUnsupported, "%s is not supported on %s", Truncate(r.Method), req.Kind)
	}
	return h(s, w, r.WithContext(withWarnings(r.Context(), w.Header())), req)
}

func (s *Server) noteError(ctx context.Context, err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(ctx, err)
	}
}

// abort ends a response whose headers are out: the client must see a cut
// connection, never a clean end of a body with wrong or missing bytes.
func (s *Server) abort(ctx context.Context, err error) {
	s.noteError(ctx, err)
	panic(http.ErrAbortHandler)
}

func serveBase(_ *Server, w http.ResponseWriter, r *http.Request, _ Request) error {
	return WriteJSON(w, r, struct{}{})
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, req Request) error {
	mf, err := s.backend.GetManifest(r.Context(), req.Repo(), req.Reference())
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", mf.MediaType)
	h.Set("Docker-Content-Digest", mf.Digest.String())
	h.Set("Content-Length", fmt.Sprint(len(mf.Data)))
	h.Set("ETag", `"`+mf.Digest.String()+`"`)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(mf.Data)
	return err
}

func (s *Server) deleteManifest(w http.ResponseWriter, r *http.Request, req Request) error {
	var err error
	if req.Tag != "" {
		err = s.backend.DeleteTag(r.Context(), req.Repo(), req.Tag)
	} else {
		err = s.backend.DeleteManifest(r.Context(), req.Repo(), req.Digest)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request, req Request) error {
	if err := s.backend.DeleteBlob(r.Context(), req.Repo(), req.Digest); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}
