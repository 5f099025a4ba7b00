package registrytest

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Kind classifies a request to the registry listener.
type Kind int

// The kinds of registry requests.
const (
	KindUnknown   Kind = iota
	KindPing           // GET /v2/
	KindToken          // the token endpoint
	KindManifest       // /v2/<repo>/manifests/<reference>
	KindBlob           // /v2/<repo>/blobs/<digest>
	KindUpload         // /v2/<repo>/blobs/uploads/...
	KindTags           // /v2/<repo>/tags/list
	KindCatalog        // /v2/_catalog
	KindReferrers      // /v2/<repo>/referrers/<digest>
)

var kindNames = [...]string{"unknown", "ping", "token", "manifest", "blob", "upload", "tags", "catalog", "referrers"}

// String names the kind, e.g. "manifest".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(?)"
}

// RequestInfo is what a request path says: its kind, repository and the
// reference (tag or digest) or blob digest it names.
type RequestInfo struct {
	Kind      Kind
	Repo      string
	Reference string
}

// classify parses a registry request path.
func classify(p string) RequestInfo {
	switch {
	case p == "/token":
		return RequestInfo{Kind: KindToken}
	case p == "/v2/" || p == "/v2":
		return RequestInfo{Kind: KindPing}
	case p == "/v2/_catalog":
		return RequestInfo{Kind: KindCatalog}
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return RequestInfo{}
	}
	if repo, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return RequestInfo{Kind: KindTags, Repo: repo}
	}
	if i := strings.Index(rest, "/blobs/uploads"); i > 0 {
		return RequestInfo{Kind: KindUpload, Repo: rest[:i]}
	}
	// A repository may itself contain "manifests" or "blobs" components, so
	// the marker that is last in the path decides.
	m := strings.LastIndex(rest, "/manifests/")
	b := strings.LastIndex(rest, "/blobs/")
	switch f := strings.LastIndex(rest, "/referrers/"); {
	case f > 0 && f > m && f > b:
		return RequestInfo{Kind: KindReferrers, Repo: rest[:f], Reference: rest[f+len("/referrers/"):]}
	case m > 0 && m > b:
		return RequestInfo{Kind: KindManifest, Repo: rest[:m], Reference: rest[m+len("/manifests/"):]}
	case b > 0:
		return RequestInfo{Kind: KindBlob, Repo: rest[:b], Reference: rest[b+len("/blobs/"):]}
	}
	return RequestInfo{}
}

// Request is one logged request to the registry listener.
type Request struct {
	RequestInfo
	Method string
	Path   string
	// Authorization reports whether the request carried an Authorization header.
	Authorization bool
	// Range is the request's Range header, as it arrived.
	Range string
	// Status is the response status, or 0 while the request is in flight.
	Status int
}

// CDNRequest is one logged request to the CDN listener.
type CDNRequest struct {
	Method string
	Path   string
	Header http.Header
	Status int
}

type manifestKey struct{ repo, reference string }

// stats is the goroutine-safe request accounting.
type stats struct {
	mu            sync.Mutex
	log           []*Request
	cdnLog        []*CDNRequest
	pings         int
	tokens        map[string]int
	manifestHeads map[manifestKey]int
	manifestGets  map[manifestKey]int
	blobGets      map[digest.Digest]int
}

func newStats() *stats {
	s := &stats{}
	s.resetLocked()
	return s
}

func (s *stats) resetLocked() {
	s.log = nil
	s.cdnLog = nil
	s.pings = 0
	s.tokens = map[string]int{}
	s.manifestHeads = map[manifestKey]int{}
	s.manifestGets = map[manifestKey]int{}
	s.blobGets = map[digest.Digest]int{}
}

// begin counts a request as it arrives, so in-flight (e.g. stalled)
// requests are visible, and returns its log entry for finish.
func (s *stats) begin(info RequestInfo, req *http.Request) *Request {
	entry := &Request{
		RequestInfo:   info,
		Method:        req.Method,
		Path:          req.URL.Path,
		Authorization: req.Header.Get("Authorization") != "",
		Range:         req.Header.Get("Range"),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, entry)
	key := manifestKey{info.Repo, info.Reference}
	switch {
	case info.Kind == KindPing:
		s.pings++
	case info.Kind == KindToken:
		for _, scope := range requestedScopes(req) {
			s.tokens[scope]++
		}
	case info.Kind == KindManifest && req.Method == http.MethodHead:
		s.manifestHeads[key]++
	case info.Kind == KindManifest && req.Method == http.MethodGet:
		s.manifestGets[key]++
	case info.Kind == KindBlob && req.Method == http.MethodGet:
		s.blobGets[digest.Digest(info.Reference)]++
	}
	return entry
}

func (s *stats) finish(entry *Request, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry.Status = status
}

func (s *stats) beginCDN(req *http.Request) *CDNRequest {
	entry := &CDNRequest{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cdnLog = append(s.cdnLog, entry)
	return entry
}

func (s *stats) finishCDN(entry *CDNRequest, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry.Status = status
}

// requestedScopes lists the scopes of a token request; a scope parameter
// may hold several, space-separated.
func requestedScopes(req *http.Request) []string {
	var scopes []string
	for _, param := range req.URL.Query()["scope"] {
		scopes = append(scopes, strings.Fields(param)...)
	}
	return scopes
}

// Reset forgets all counts and logs.
func (r *Registry) Reset() {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	r.stats.resetLocked()
}

// Requests returns a copy of the registry listener's request log, oldest first.
func (r *Registry) Requests() []Request {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	out := make([]Request, len(r.stats.log))
	for i, e := range r.stats.log {
		out[i] = *e
	}
	return out
}

// CDNRequests returns a copy of the CDN listener's request log, with the
// headers each request carried.
func (r *Registry) CDNRequests() []CDNRequest {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	out := make([]CDNRequest, len(r.stats.cdnLog))
	for i, e := range r.stats.cdnLog {
		out[i] = *e
		out[i].Header = e.Header.Clone()
	}
	return out
}

// Pings counts GET /v2/ requests.
func (r *Registry) Pings() int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return r.stats.pings
}

// TokenRequests counts token requests that asked for scope, e.g.
// "repository:library/node:pull".
func (r *Registry) TokenRequests(scope string) int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return r.stats.tokens[scope]
}

// TokenScopes returns every scope asked for at the token endpoint with its
// request count.
func (r *Registry) TokenScopes() map[string]int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	out := make(map[string]int, len(r.stats.tokens))
	for k, v := range r.stats.tokens {
		out[k] = v
	}
	return out
}

// ManifestHeads counts HEAD requests for repo's manifest reference (a tag or digest).
func (r *Registry) ManifestHeads(repo, reference string) int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return r.stats.manifestHeads[manifestKey{repo, reference}]
}

// ManifestGets counts GET requests for repo's manifest reference (a tag or digest).
func (r *Registry) ManifestGets(repo, reference string) int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return r.stats.manifestGets[manifestKey{repo, reference}]
}

// ManifestGetsTotal counts all manifest GET requests.
func (r *Registry) ManifestGetsTotal() int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return sumValues(r.stats.manifestGets)
}

// BlobGets counts GET requests for blob d on the registry listener (a
// redirected GET counts here once, and again in CDNRequests).
func (r *Registry) BlobGets(d digest.Digest) int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return r.stats.blobGets[d]
}

// BlobGetsTotal counts all blob GET requests on the registry listener.
func (r *Registry) BlobGetsTotal() int {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	return sumValues(r.stats.blobGets)
}

func sumValues[K comparable](m map[K]int) int {
	total := 0
	for _, v := range m {
		total += v
	}
	return total
}

// CountRequests counts logged registry requests for which match is true.
func (r *Registry) CountRequests(match func(Request) bool) int {
	return len(slices.DeleteFunc(r.Requests(), func(req Request) bool { return !match(req) }))
}
