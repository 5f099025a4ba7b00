package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// manifestAccept is what dockerd asks for when it resolves a tag.
var manifestAccept = strings.Join([]string{
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
}, ", ")

// copyBuffer is the chunk the puller hashes blobs in.
const copyBuffer = 256 << 10

// puller pulls one platform's image the way dockerd does: resolve the tag,
// pick the platform's manifest, then download the config and layers a few
// at a time, checking each blob's size and sha256. The same code pulls from
// the upstream (answering its token challenges), from the mirror, and from a
// plain file server, so the numbers compare like with like.
type puller struct {
	base   string
	client *http.Client
	// user and password answer Bearer challenges; empty means anonymous.
	user, password string
	// concurrency is the number of blobs downloaded at once.
	concurrency int

	mu sync.Mutex
	// tokens caches one bearer token per challenge scope, as dockerd does.
	tokens map[string]string
}

func newPuller(base string, concurrency int) *puller {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	// Blobs are compressed already; Go's transparent gzip would only cost CPU.
	t.DisableCompression = true
	return &puller{
		base:        strings.TrimSuffix(base, "/"),
		client:      &http.Client{Transport: t},
		concurrency: concurrency,
		tokens:      map[string]string{},
	}
}

func (p *puller) withCredentials(user, password string) *puller {
	p.user, p.password = user, password
	return p
}

// close drops the puller's idle connections, so the next pull starts cold.
func (p *puller) close() { p.client.CloseIdleConnections() }

// pullResult is what one pull moved and how long its parts took.
type pullResult struct {
	blobs     int
	bytes     int64
	resolve   time.Duration // tag → platform manifest
	download  time.Duration // all blobs, concurrency at a time
	startedAt time.Time
	endedAt   time.Time
}

func (r pullResult) total() time.Duration { return r.endedAt.Sub(r.startedAt) }

// pull resolves repo:tag to the platform's image and downloads its blobs.
func (p *puller) pull(ctx context.Context, repo, tag string, platform ocispec.Platform) (pullResult, error) {
	res := pullResult{startedAt: time.Now()}
	blobs, err := p.resolve(ctx, repo, tag, platform)
	if err != nil {
		return res, err
	}
	res.resolve = time.Since(res.startedAt)
	dl, err := p.download(ctx, repo, blobs)
	if err != nil {
		return res, err
	}
	dl.startedAt, dl.resolve = res.startedAt, res.resolve
	return dl, nil
}

// resolve returns the config and layers of repo:tag for platform.
func (p *puller) resolve(ctx context.Context, repo, tag string, platform ocispec.Platform) ([]ocispec.Descriptor, error) {
	mediaType, data, err := p.manifest(ctx, repo, tag)
	if err != nil {
		return nil, err
	}
	if isIndex(mediaType) {
		d, err := pickPlatform(data, platform)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", repo, tag, err)
		}
		if _, data, err = p.manifest(ctx, repo, d.String()); err != nil {
			return nil, err
		}
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s:%s: decoding manifest: %w", repo, tag, err)
	}
	return append([]ocispec.Descriptor{m.Config}, m.Layers...), nil
}

func isIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex ||
		mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"
}

func pickPlatform(index []byte, want ocispec.Platform) (digest.Digest, error) {
	var ix ocispec.Index
	if err := json.Unmarshal(index, &ix); err != nil {
		return "", fmt.Errorf("decoding index: %w", err)
	}
	for _, m := range ix.Manifests {
		if m.Platform != nil && m.Platform.OS == want.OS && m.Platform.Architecture == want.Architecture {
			return m.Digest, nil
		}
	}
	return "", fmt.Errorf("no %s/%s image in the index", want.OS, want.Architecture)
}

// manifest fetches a manifest by tag or digest and checks a digest reference.
func (p *puller) manifest(ctx context.Context, repo, ref string) (string, []byte, error) {
	resp, err := p.get(ctx, repo, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", nil, fmt.Errorf("manifest %s@%s: %w", repo, ref, err)
	}
	if d, err := digest.Parse(ref); err == nil && d != digest.FromBytes(data) {
		return "", nil, fmt.Errorf("manifest %s@%s: content does not match its digest", repo, ref)
	}
	return resp.Header.Get("Content-Type"), data, nil
}

// download fetches blobs, p.concurrency at a time, verifying each.
func (p *puller) download(ctx context.Context, repo string, blobs []ocispec.Descriptor) (pullResult, error) {
	start := time.Now()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(p.concurrency)
	for _, b := range blobs {
		g.Go(func() error { return p.blob(ctx, repo, b) })
	}
	err := g.Wait()
	end := time.Now()
	res := pullResult{blobs: len(blobs), download: end.Sub(start), startedAt: start, endedAt: end}
	for _, b := range blobs {
		res.bytes += b.Size
	}
	return res, err
}

// blob downloads one blob and checks its size and sha256.
func (p *puller) blob(ctx context.Context, repo string, want ocispec.Descriptor) error {
	resp, err := p.get(ctx, repo, "/v2/"+repo+"/blobs/"+want.Digest.String(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return verifyBlob(resp.Body, want)
}

// timeToFirstByte downloads one blob like blob, and returns how long it
// took from sending the request to reading the first byte of the body.
func (p *puller) timeToFirstByte(ctx context.Context, repo string, want ocispec.Descriptor) (time.Duration, error) {
	start := time.Now()
	resp, err := p.get(ctx, repo, "/v2/"+repo+"/blobs/"+want.Digest.String(), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		return 0, fmt.Errorf("blob %s: reading the first byte: %w", want.Digest, err)
	}
	took := time.Since(start)
	return took, verifyBlob(io.MultiReader(bytes.NewReader(first), resp.Body), want)
}

// verifyBlob reads a blob's body and checks its size and sha256.
func verifyBlob(body io.Reader, want ocispec.Descriptor) error {
	h := sha256.New()
	n, err := io.CopyBuffer(h, body, make([]byte, copyBuffer))
	if err != nil {
		return fmt.Errorf("blob %s after %d bytes: %w", want.Digest, n, err)
	}
	if n != want.Size {
		return fmt.Errorf("blob %s: got %d bytes, want %d", want.Digest, n, want.Size)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want.Digest {
		return fmt.Errorf("blob %s: content hashes to %s", want.Digest, got)
	}
	return nil
}

// get sends a GET, answering one Bearer challenge if there is one, and
// returns a 200 response.
func (p *puller) get(ctx context.Context, repo, path string, header http.Header) (*http.Response, error) {
	resp, err := p.send(ctx, path, header, p.token(repo))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && p.user != "" {
		challenge := resp.Header.Get("WWW-Authenticate")
		drain(resp)
		token, err := p.login(ctx, repo, challenge)
		if err != nil {
			return nil, err
		}
		if resp, err = p.send(ctx, path, header, token); err != nil {
			return nil, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		drain(resp)
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

func (p *puller) send(ctx context.Context, path string, header http.Header, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return p.client.Do(req)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func (p *puller) token(repo string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens[repo]
}

// login answers a Bearer challenge with the puller's credentials and caches
// the token for repo.
func (p *puller) login(ctx context.Context, repo, challenge string) (string, error) {
	params, ok := parseBearer(challenge)
	if !ok || params["realm"] == "" {
		return "", fmt.Errorf("unexpected challenge %q", challenge)
	}
	q := url.Values{"service": {params["service"]}}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, params["realm"]+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(p.user, p.password)
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token: %s", resp.Status)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Token == "" {
		return "", errors.Join(errors.New("token: no token in the answer"), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[repo] = body.Token
	return body.Token, nil
}

// parseBearer reads the parameters of a `Bearer k="v",...` challenge. Values
// here never contain commas inside quotes except in scope lists, which the
// registry under test does not send, so a plain split is enough.
func parseBearer(challenge string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(challenge, "Bearer ")
	if !ok {
		return nil, false
	}
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			params[k] = strings.Trim(v, `"`)
		}
	}
	return params, true
}
