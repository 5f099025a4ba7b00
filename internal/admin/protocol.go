package admin

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
)

// SocketName is the admin endpoint's unix socket in the data directory.
// It is reachable only by the daemon's user (mode 0600) and never served on
// the registry port: pruning is not for the network.
const SocketName = "admin.sock"

// The admin API's paths. Every call is a POST of a JSON request; the answer is a
// stream of JSON lines (message), progress first, then one result or
// one error.
const (
	StatsPath  = "/v1/cache/stats"
	PrunePath  = "/v1/cache/prune"
	VerifyPath = "/v1/cache/verify"
	EvictPath  = "/v1/cache/evict"
	// PrefetchPath fetches an image list, or the configured one.
	PrefetchPath = "/v1/prefetch"
)

// message is one line of an admin answer.
type message struct {
	Progress *Progress       `json:"progress,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// Handler serves the cache operations to the CLI. The daemon adds its own
// operations (PrefetchPath) to the mux with Call.
func Handler(ops *Ops, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("POST "+StatsPath, Call(log, func(ctx context.Context, _ struct{}, _ func(Progress)) (any, error) {
		return ops.Stats(ctx)
	}))
	mux.Handle("POST "+PrunePath, Call(log, func(ctx context.Context, req PruneRequest, progress func(Progress)) (any, error) {
		return ops.Prune(ctx, req, progress)
	}))
	mux.Handle("POST "+VerifyPath, Call(log, func(ctx context.Context, req VerifyRequest, progress func(Progress)) (any, error) {
		return ops.Verify(ctx, req, progress)
	}))
	mux.Handle("POST "+EvictPath, Call(log, func(ctx context.Context, _ struct{}, _ func(Progress)) (any, error) {
		return ops.Evict(ctx)
	}))
	mux.Handle("POST "+LsPath, Call(log, func(ctx context.Context, req LsRequest, _ func(Progress)) (any, error) {
		return ops.Ls(ctx, req)
	}))
	return mux
}

// Call decodes the request, runs op and streams its progress and
// result as JSON lines.
func Call[Req any](log *slog.Logger, op func(context.Context, Req, func(Progress)) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		out := &lineWriter{w: w, rc: http.NewResponseController(w)}
		result, err := op(r.Context(), req, func(p Progress) { out.send(message{Progress: &p}) })
		if err != nil {
			log.Warn("admin call failed", "path", r.URL.Path, "err", err)
			out.send(message{Error: err.Error()})
			return
		}
		data, err := json.Marshal(result)
		if err != nil {
			out.send(message{Error: err.Error()})
			return
		}
		out.send(message{Result: data})
	})
}

// lineWriter writes JSON lines and flushes each, so progress shows as it
// happens.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
	rc *http.ResponseController
}

func (l *lineWriter) send(m message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := json.NewEncoder(l.w).Encode(m); err == nil {
		_ = l.rc.Flush()
	}
}

// Listen binds the admin socket in dataDir. The daemon holds the data
// directory's lock, so a socket file left there is a crashed daemon's and is
// replaced. The socket is bound in a private directory and renamed into
// place, so it is never reachable with looser permissions than 0600.
func Listen(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, SocketName)
	private, err := os.MkdirTemp(dataDir, ".adm")
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(private)
	ln, err := net.Listen("unix", filepath.Join(private, SocketName))
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(filepath.Join(private, SocketName), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(filepath.Join(private, SocketName), path); err != nil {
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

// Serve answers on ln with h (see Handler) until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
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

// ErrNoDaemon means no daemon answers on the admin socket.
var ErrNoDaemon = errors.New("no daemon answers on the admin socket")

// Client calls a running daemon's admin socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns the client of the admin socket in dataDir; it connects
// on each call.
func NewClient(dataDir string) *Client {
	socket := filepath.Join(dataDir, SocketName)
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	// No kept-alive connections: one left from a call to a daemon that has
	// since stopped would fail the next call with a reset instead of
	// ErrNoDaemon (or reach a daemon started since on the same path).
	transport := &http.Transport{DialContext: dial, DisableKeepAlives: true}
	return &Client{socket: socket, http: &http.Client{Transport: transport}}
}

// Call posts req to path and decodes the result into out, passing progress
// on as it arrives. It fails with ErrNoDaemon when nothing listens.
func (c *Client) Call(ctx context.Context, path string, req, out any, progress func(Progress)) error {
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
			return fmt.Errorf("%w (%s)", ErrNoDaemon, c.socket)
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

// Stats is Ops.Stats in the daemon.
func (c *Client) Stats(ctx context.Context) (r StatsReport, err error) {
	return r, c.Call(ctx, StatsPath, struct{}{}, &r, nil)
}

// Prune is Ops.Prune in the daemon.
func (c *Client) Prune(ctx context.Context, req PruneRequest, progress func(Progress)) (r PruneReport, err error) {
	return r, c.Call(ctx, PrunePath, req, &r, progress)
}

// Evict is Ops.Evict in the daemon.
func (c *Client) Evict(ctx context.Context) (r EvictReport, err error) {
	return r, c.Call(ctx, EvictPath, struct{}{}, &r, nil)
}

// Verify is Ops.Verify in the daemon.
func (c *Client) Verify(ctx context.Context, req VerifyRequest, progress func(Progress)) (r VerifyReport, err error) {
	return r, c.Call(ctx, VerifyPath, req, &r, progress)
}

// Ls is Ops.Ls in the daemon.
func (c *Client) Ls(ctx context.Context, req LsRequest) (r LsReport, err error) {
	return r, c.Call(ctx, LsPath, req, &r, nil)
}

func readAdminStream(r io.Reader, out any, progress func(Progress)) error {
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 64<<10), 256<<20) // a large prune's report is one line
	for lines.Scan() {
		var m message
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

// isNoListener reports a dial that found no socket, or a socket nobody
// listens on: a daemon that is not running, or died.
func isNoListener(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}
