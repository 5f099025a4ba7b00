package mirror

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// requestNotes is what the handlers learn about a request that the access
// log and metrics want: filled in during the request, read once at its end.
type requestNotes struct {
	kind     kind
	upstream string
	// repository is the path on upstream, known once the request is routed.
	repository string
	result     string
	err        error
	// client is who sent the request, when it came with credentials.
	client *lazyPrincipal
}

type notesKey struct{}

func notesFrom(ctx context.Context) *requestNotes {
	n, _ := ctx.Value(notesKey{}).(*requestNotes)
	if n == nil {
		return &requestNotes{} // a throwaway, so callers never check for nil
	}
	return n
}

func noteKind(ctx context.Context, k kind)         { notesFrom(ctx).kind = k }
func noteUpstream(ctx context.Context, h string)   { notesFrom(ctx).upstream = h }
func noteRepository(ctx context.Context, r string) { notesFrom(ctx).repository = r }
func noteResult(ctx context.Context, r string)     { notesFrom(ctx).result = r }
func noteError(ctx context.Context, err error)     { notesFrom(ctx).err = err }

// statusRecorder remembers what was answered, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	now    func() time.Time
	status int
	bytes  int64
	// firstByte is when the first byte of the body was written.
	firstByte time.Time
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.firstByte.IsZero() && len(p) > 0 {
		s.firstByte = s.now()
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// ReadFrom passes a body's reader on to the connection's writer, so that a
// file reaches net/http's ReadFrom, which sends it with sendfile(2).
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	start := s.now()
	var n int64
	var err error
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{s.ResponseWriter}, src)
	}
	if s.firstByte.IsZero() && n > 0 {
		s.firstByte = start
	}
	s.bytes += n
	return n, err
}

// writerOnly hides every method but Write, so io.Copy does not loop back
// into ReadFrom.
type writerOnly struct{ io.Writer }

// Unwrap lets http.ResponseController reach the connection (write deadlines, flushes).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog writes one log line and one set of observations per request.
// It runs even when a handler aborts a response with http.ErrAbortHandler.
func (m *Mirror) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := m.now()
		notes := &requestNotes{}
		rec := &statusRecorder{ResponseWriter: w, now: m.now}
		defer func() {
			aborted := recover()
			m.logRequest(r, rec, notes, start, aborted != nil)
			if aborted != nil {
				panic(aborted)
			}
		}()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), notesKey{}, notes)))
	})
}

func (m *Mirror) logRequest(r *http.Request, rec *statusRecorder, n *requestNotes, start time.Time, aborted bool) {
	took := m.now().Sub(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	m.metrics.observeRequest(n.kind.String(), r.Method, status, took)
	if n.kind == ociserver.KindBlob && r.Method == http.MethodGet && status/100 == 2 && !rec.firstByte.IsZero() {
		m.metrics.observeBlobFirstByte(n.result, rec.firstByte.Sub(start))
	}
	m.recent.record(r, n, status, rec.bytes, took, m.now())
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", clip(r.URL.Path, maxLoggedPath)),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Duration("duration", took),
		slog.String("client", hostOf(r.RemoteAddr)),
	}
	if user := m.loggedUser(r, n.client); user != "" {
		attrs = append(attrs, slog.String("user", user))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, slog.String("user_agent", clip(ua, maxLoggedUserAgent)))
	}
	if id := r.Header.Get(requestIDHeader); id != "" {
		attrs = append(attrs, slog.String("request_id", clip(id, maxLoggedRequestID)))
	}
	if n.upstream != "" {
		attrs = append(attrs, slog.String("upstream", n.upstream))
	}
	if n.result != "" {
		attrs = append(attrs, slog.String("cache", n.result))
	}
	level := slog.LevelInfo
	if n.err != nil {
		attrs = append(attrs, slog.String("error", n.err.Error()))
		if status >= 500 {
			level = slog.LevelWarn
		}
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
		level = slog.LevelWarn
	}
	m.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// maxLoggedPath keeps every valid request path whole (repository names are
// at most 255 characters, a sha512 digest 135) while bounding what a
// hostile client can make the mirror write to its log.
const maxLoggedPath = 512

// maxLoggedUserAgent keeps the longest real user agents whole (dockerd's
// lists its Go, git commit, kernel, OS and architecture: some 200 bytes).
const maxLoggedUserAgent = 400

// requestIDHeader is where the daemon's edge (internal/edge) puts each
// request's ID: a trusted proxy's, or one of its own, never a client's.
// The response carries it too.
const requestIDHeader = "X-Request-Id"

// maxLoggedRequestID bounds an ID that did not come through the edge.
const maxLoggedRequestID = 128

// hostOf is the address part of a RemoteAddr: behind a trusted proxy the
// port is 0 (it is not forwarded), and an address is what audits match.
func hostOf(remoteAddr string) string {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return remoteAddr
}

// clip shortens s to at most limit bytes, marking the cut.
func clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

func statusClass(status int) string {
	return strconv.Itoa(status/100) + "xx"
}
