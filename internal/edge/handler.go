package edge

import (
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// DefaultBodyIdleTimeout is the default of Options.BodyIdleTimeout: like
// the mirror's send timeout, a minute without a byte is far beyond any
// link a client pushes over.
const DefaultBodyIdleTimeout = time.Minute

// maxRefusedBodyDrain bounds how long the server may go on reading a
// refused body after the refusal was sent (at most the body idle timeout
// too): reading it lets the refusal reach the client instead of being lost
// to a reset, and the bound keeps a client that declared a body and sends
// none from holding the connection.
const maxRefusedBodyDrain = 5 * time.Second

// Reasons a request is refused, the values of the metric's reason label.
const (
	refusedPath = "path"
	refusedBody = "body"
)

// Options configure Handler. The zero value trusts no proxy and uses the
// defaults.
type Options struct {
	// Proxies are the reverse proxies whose forwarding headers are believed.
	Proxies Proxies
	// BodyIdleTimeout is how long a request body may send nothing before
	// the read fails and the connection is closed. It bounds each wait,
	// not the whole body, so a large push over a slow link is never cut
	// short. Zero means DefaultBodyIdleTimeout.
	BodyIdleTimeout time.Duration
	// Log receives one line per refused request, like the access log's;
	// nil discards.
	Log     *slog.Logger
	Metrics *Metrics
}

// Handler guards next, in this order:
//
//   - forwarding headers count only from Options.Proxies (see Proxies);
//   - every request gets an ID in its X-Request-Id header, and the
//     response the same header: a trusted proxy's, else a new one;
//   - a path that is not canonical (empty, "." or ".." segments) is
//     answered 400 NAME_INVALID, never redirected to a cleaned path as
//     http.ServeMux would: the path a registry client names is the
//     repository it means, and a redirect could make it pull another;
//   - a body on a method that takes none (GET, HEAD, DELETE) is refused
//     with 400 UNSUPPORTED before next runs, so no file is opened for a
//     request whose unsent body the server would wait for;
//   - any other body has an idle deadline: each read waits at most
//     Options.BodyIdleTimeout.
func Handler(next http.Handler, opts Options) http.Handler {
	if opts.BodyIdleTimeout <= 0 {
		opts.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &guard{next: next, opts: opts}
}

type guard struct {
	next http.Handler
	opts Options
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = g.opts.Proxies.apply(r)
	r, id := withRequestID(r)
	w.Header().Set(RequestIDHeader, id)
	switch {
	case !canonical(r.URL.EscapedPath()):
		g.refuse(w, r, refusedPath, "NAME_INVALID", "the path is not canonical: it has empty, \".\" or \"..\" segments")
	case r.ContentLength != 0 && !takesBody(r.Method):
		// An HTTP/1 server reads the declared body before and after
		// answering; a deadline bounds that, and the connection closes
		// after. (HTTP/2 resets just the stream.)
		drain := min(g.opts.BodyIdleTimeout, maxRefusedBodyDrain)
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drain))
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		g.refuse(w, r, refusedBody, "UNSUPPORTED", r.Method+" requests must not carry a body")
	case r.ContentLength != 0:
		g.next.ServeHTTP(w, withIdleDeadline(w, r, g.opts.BodyIdleTimeout))
	default:
		g.next.ServeHTTP(w, r)
	}
}

// canonical reports whether an escaped path is what http.ServeMux would
// leave of it (see net/http's cleanPath): rooted, without empty, "." or
// ".." segments; a trailing slash is fine.
func canonical(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// takesBody reports whether a method may carry a request body in the
// registry API and the operational endpoints.
func takesBody(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodDelete:
		return false
	}
	return true
}

// refuse answers 400 with an OCI error body, through the protocol's one
// error writer, and logs the request the way the access log would have.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, reason, code, message string) {
	g.opts.Metrics.refusedRequest(reason)
	g.opts.Log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("path", clip(r.URL.EscapedPath())),
		slog.Int("status", http.StatusBadRequest),
		slog.String("client", clientAddr(r)),
		slog.String("request_id", r.Header.Get(RequestIDHeader)),
		slog.String("error", code+": "+message))
	ociserver.WriteError(w, r, &ociserver.Error{Code: code, Message: message, Status: http.StatusBadRequest})
}

// clip bounds what a hostile path can write to the log; the limit keeps
// every valid registry path whole, like the access log's.
func clip(s string) string {
	const limit = 400
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// withIdleDeadline gives r a body whose every read must make progress
// within idle. The deadline is set before the handler runs too, so that a
// handler that never reads leaves the server's own drain of the body
// bounded as well.
func withIdleDeadline(w http.ResponseWriter, r *http.Request, idle time.Duration) *http.Request {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(idle))
	r = r.WithContext(r.Context()) // a copy, whose Body may change
	r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: idle}
	return r
}

// idleBody sets a read deadline on the connection before each read.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	// Without deadlines (a recorder in a test), it just reads.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The body is in. The server now watches the idle connection for
		// the client going away, and a deadline left behind would read as
		// that and cancel the request while its answer is worked out.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
