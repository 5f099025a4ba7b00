package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

// blobStore is the registry's in-memory blob storage. Unlike ggcr's own
// in-memory handler it can be filled without copying through HTTP (large
// benchmark images) and it answers with a redirect when blobs live "on the CDN".
type blobStore struct {
	// redirect returns where a blob GET should be sent instead, if anywhere.
	redirect func(h v1.Hash) (location string, ok bool)

	mu    sync.RWMutex
	blobs map[v1.Hash][]byte
	// repos scopes a blob to the repositories named, when it has an entry:
	// other repositories answer 404 for it. Blobs without one are in every
	// repository.
	repos map[v1.Hash]map[string]bool
}

var (
	_ ggcrregistry.BlobStatHandler   = (*blobStore)(nil)
	_ ggcrregistry.BlobPutHandler    = (*blobStore)(nil)
	_ ggcrregistry.BlobDeleteHandler = (*blobStore)(nil)
)

func newBlobStore() *blobStore {
	return &blobStore{blobs: map[v1.Hash][]byte{}, repos: map[v1.Hash]map[string]bool{}}
}

func (s *blobStore) get(h v1.Hash) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[h]
	return b, ok
}

// getIn returns blob h if repo holds it.
func (s *blobStore) getIn(repo string, h v1.Hash) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if scope, ok := s.repos[h]; ok && !scope[repo] {
		return nil, false
	}
	b, ok := s.blobs[h]
	return b, ok
}

// scope adds repo to the repositories that hold blob h.
func (s *blobStore) scope(h v1.Hash, repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos[h] == nil {
		s.repos[h] = map[string]bool{}
	}
	s.repos[h][repo] = true
}

// put stores data, which the store owns from now on.
func (s *blobStore) put(h v1.Hash, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[h] = data
}

// Stat implements ggcr's BlobStatHandler.
func (s *blobStore) Stat(_ context.Context, repo string, h v1.Hash) (int64, error) {
	b, ok := s.getIn(repo, h)
	if !ok {
		return 0, ggcrregistry.ErrNotFound
	}
	if location, ok := s.redirect(h); ok {
		return 0, ggcrregistry.RedirectError{Location: location, Code: http.StatusTemporaryRedirect}
	}
	return int64(len(b)), nil
}

// Get implements ggcr's BlobHandler.
func (s *blobStore) Get(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	b, ok := s.getIn(repo, h)
	if !ok {
		return nil, ggcrregistry.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Put implements ggcr's BlobPutHandler; ggcr verifies the digest while we read.
func (s *blobStore) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	s.put(h, data)
	return nil
}

// Delete implements ggcr's BlobDeleteHandler.
func (s *blobStore) Delete(_ context.Context, _ string, h v1.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.blobs[h]; !ok {
		return ggcrregistry.ErrNotFound
	}
	delete(s.blobs, h)
	return nil
}

// blobRedirect sends blob GETs to the CDN while redirects are on.
func (r *Registry) blobRedirect(h v1.Hash) (string, bool) {
	if !r.redirect.Load() {
		return "", false
	}
	return r.cdnURL + "/blobs/" + h.String() + "?expires=" + strconv.FormatInt(r.opts.Now().Add(time.Hour).Unix(), 10), true
}

// serveCDN is the CDN listener's handler: GET or HEAD /blobs/<digest>,
// unauthenticated, logging every request with its headers.
func (r *Registry) serveCDN(w http.ResponseWriter, req *http.Request) {
	if !r.active.enter() {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "registry is closing")
		return
	}
	defer r.active.exit()

	rec := &statusRecorder{ResponseWriter: w}
	entry := r.stats.beginCDN(req)
	defer func() { r.stats.finishCDN(entry, rec.statusCode()) }()

	if r.down.Load() {
		writeStatusError(rec, http.StatusServiceUnavailable)
		return
	}
	ref, ok := strings.CutPrefix(req.URL.Path, "/blobs/")
	h, err := v1.NewHash(ref)
	if !ok || err != nil || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		http.NotFound(rec, req)
		return
	}
	data, ok := r.blobs.get(h)
	if !ok {
		http.NotFound(rec, req)
		return
	}
	rec.Header().Set("Content-Type", "application/octet-stream")
	out := http.ResponseWriter(rec)
	if req.Method == http.MethodGet {
		fail, cut := r.random.draw()
		if fail {
			writeStatusError(rec, http.StatusInternalServerError)
			return
		}
		if r.ignoreRange.Load() {
			req.Header.Del("Range")
		}
		fw := r.newFaultWriter(rec, req, ref, r.throttle)
		fw.cut = cut
		out = fw
	}
	http.ServeContent(out, req, "", time.Time{}, bytes.NewReader(data))
}

// serveTagsPage serves one page of at most Options.TagsPageSize tags, with a
// Link header to the next page when there is one, as Docker Hub does.
func (r *Registry) serveTagsPage(w http.ResponseWriter, req *http.Request, repo string) {
	q := req.URL.Query()
	n := r.opts.TagsPageSize
	if asked, err := strconv.Atoi(q.Get("n")); err == nil && asked > 0 && asked < n {
		n = asked
	}
	// Ask for one more tag than the page holds to learn whether a next page exists.
	q.Set("n", strconv.Itoa(n+1))
	inner := req.Clone(req.Context())
	inner.URL.RawQuery = q.Encode()
	rec := httptest.NewRecorder()
	r.registry.ServeHTTP(rec, inner)
	if rec.Code != http.StatusOK {
		copyRecorded(w, rec)
		return
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if len(list.Tags) > n {
		list.Tags = list.Tags[:n]
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {list.Tags[n-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, repo, next.Encode()))
	}
	writeJSON(w, http.StatusOK, list)
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// blobHash converts a digest to ggcr's hash type.
func blobHash(d digest.Digest) (v1.Hash, error) {
	return v1.NewHash(d.String())
}
