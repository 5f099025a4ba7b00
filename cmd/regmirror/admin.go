package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// adminSocketName is the admin endpoint's unix socket in the data directory.
// It is reachable only by the daemon's user (mode 0600) and never served on
// the registry port: pruning is not for the network.
const adminSocketName = "admin.sock"

// Admin API paths. Every call is a POST of a JSON request; the answer is a
// stream of JSON lines (adminMessage), progress first, then one result or
// one error.
const (
	adminStatsPath  = "/v1/cache/stats"
	adminPrunePath  = "/v1/cache/prune"
	adminVerifyPath = "/v1/cache/verify"
	adminEvictPath  = "/v1/cache/evict"
	// adminPrefetchPath fetches an image list, or the configured one.
	adminPrefetchPath = "/v1/prefetch"
)

// adminMessage is one line of an admin answer.
type adminMessage struct {
	Progress *progressEvent  `json:"progress,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// adminHandler serves the cache operations to the CLI.
func adminHandler(ops *cacheOps, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+adminStatsPath, adminCall(log, func(ctx context.Context, _ struct{}, _ func(progressEvent)) (any, error) {
		return ops.stats(ctx)
	}))
	mux.Handle("POST "+adminPrunePath, adminCall(log, func(ctx context.Context, req pruneRequest, progress func(progressEvent)) (any, error) {
		return ops.prune(ctx, req, progress)
	}))
	mux.Handle("POST "+adminVerifyPath, adminCall(log, func(ctx context.Context, req verifyRequest, progress func(progressEvent)) (any, error) {
		return ops.verify(ctx, req, progress)
	}))
	mux.Handle("POST "+adminEvictPath, adminCall(log, func(ctx context.Context, _ struct{}, _ func(progressEvent)) (any, error) {
		return ops.evict(ctx)
	}))
	mux.Handle("POST "+adminPrefetchPath, adminCall(log, func(ctx context.Context, req prefetchRequest, progress func(progressEvent)) (any, error) {
		return ops.prefetch(ctx, req, progress)
	}))
	mux.Handle("POST "+adminLsPath, adminCall(log, func(ctx context.Context, req lsRequest, _ func(progressEvent)) (any, error) {
		return ops.ls(ctx, req)
	}))
	return mux
}

// adminCall decodes the request, runs op and streams its progress and
// result as JSON lines.
func adminCall[Req any](log *slog.Logger, op func(context.Context, Req, func(progressEvent)) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		out := &lineWriter{w: w, rc: http.NewResponseController(w)}
		result, err := op(r.Context(), req, func(p progressEvent) { out.send(adminMessage{Progress: &p}) })
		if err != nil {
			log.Warn("admin call failed", "path", r.URL.Path, "err", err)
			out.send(adminMessage{Error: err.Error()})
			return
		}
		data, err := json.Marshal(result)
		if err != nil {
			out.send(adminMessage{Error: err.Error()})
			return
		}
		out.send(adminMessage{Result: data})
	})
}

// lineWriter writes JSON lines and flushes each, so progress shows as it
// happens.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
	rc *http.ResponseController
}

func (l *lineWriter) send(m adminMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := json.NewEncoder(l.w).Encode(m); err == nil {
		_ = l.rc.Flush()
	}
}

// listenAdmin binds the admin socket in dataDir. The daemon holds the data
// directory's lock, so a socket file left there is a crashed daemon's and is
// replaced. The socket is bound in a private directory and renamed into
// place, so it is never reachable with looser permissions than 0600.
func listenAdmin(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, adminSocketName)
	private, err := os.MkdirTemp(dataDir, ".adm")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(private)
	ln, err := net.Listen("unix", filepath.Join(private, adminSocketName))
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(filepath.Join(private, adminSocketName), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(filepath.Join(private, adminSocketName), path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &socketListener{Listener: ln, path: path}, nil
}

// socketListener removes its socket file when closed.
type socketListener struct {
	net.Listener
	path string
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

// serveAdmin answers on ln until ctx ends.
func serveAdmin(ctx context.Context, ln net.Listener, ops *cacheOps, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           adminHandler(ops, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin socket: %w", err)
}

// errNoDaemon means no daemon answers on the admin socket.
var errNoDaemon = errors.New("no daemon answers on the admin socket")

// adminClient calls a running daemon's admin socket.
type adminClient struct {
	socket string
	http   *http.Client
}

func newAdminClient(dataDir string) *adminClient {
	socket := filepath.Join(dataDir, adminSocketName)
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	return &adminClient{socket: socket, http: &http.Client{Transport: &http.Transport{DialContext: dial}}}
}

// call posts req to path and decodes the result into out, passing progress
// on as it arrives. It fails with errNoDaemon when nothing listens.
func (c *adminClient) call(ctx context.Context, path string, req, out any, progress func(progressEvent)) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://regmirror"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		if isNoListener(err) {
			return fmt.Errorf("%w (%s)", errNoDaemon, c.socket)
		}
		return fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("daemon answered %s: %s", resp.Status, msg)
	}
	return readAdminStream(resp.Body, out, progress)
}

func readAdminStream(r io.Reader, out any, progress func(progressEvent)) error {
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 64<<10), 256<<20) // a large prune's report is one line
	for lines.Scan() {
		var m adminMessage
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			return fmt.Errorf("daemon sent a malformed answer: %w", err)
		}
		switch {
		case m.Error != "":
			return fmt.Errorf("daemon: %s", m.Error)
		case m.Progress != nil:
			if progress != nil {
				progress(*m.Progress)
			}
		case m.Result != nil:
			return json.Unmarshal(m.Result, out)
		}
	}
	if err := lines.Err(); err != nil {
		return fmt.Errorf("reading the daemon's answer: %w", err)
	}
	return errors.New("the daemon ended its answer without a result")
}

// trafficFrom reads the mirror's counters from the daemon's registry.
func trafficFrom(reg prometheus.Gatherer, since time.Time) func() (*trafficReport, error) {
	return func() (*trafficReport, error) {
		families, err := reg.Gather()
		if err != nil {
			return nil, err
		}
		t := &trafficReport{Since: since}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				value := int64(m.GetCounter().GetValue())
				switch f.GetName() {
				case "regmirror_cache_lookups_total":
					switch label(m.GetLabel(), "result") {
					case "hit", "stale":
						t.Hits += value
					case "miss", "coalesced":
						t.Misses += value
					}
				case "regmirror_served_bytes_total":
					switch label(m.GetLabel(), "source") {
					case "cache":
						t.CacheBytes += value
					case "upstream":
						t.UpstreamBytes += value
					}
				}
			}
		}
		if n := t.Hits + t.Misses; n > 0 {
			t.HitRatio = float64(t.Hits) / float64(n)
		}
		return t, nil
	}
}

// label returns the value of the label called name.
func label[P interface {
	GetName() string
	GetValue() string
}](pairs []P, name string) string {
	for _, p := range pairs {
		if p.GetName() == name {
			return p.GetValue()
		}
	}
	return ""
}

// isNoListener reports a dial that found no socket, or a socket nobody
// listens on: a daemon that is not running, or died.
func isNoListener(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}
