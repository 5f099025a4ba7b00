package registrytest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// FaultKind is how a response body goes wrong.
type FaultKind int

// The kinds of body faults.
const (
	// Corrupt flips one byte: the body has the right length and the wrong digest.
	Corrupt FaultKind = iota + 1
	// Truncate sends fewer bytes than Content-Length promised, then closes
	// the connection.
	Truncate
	// Stall sends part of the body, then hangs until the fault is released
	// (the rest follows), the client goes away, or the registry closes.
	Stall
)

// Fault describes what goes wrong with the bodies of one digest.
type Fault struct {
	Kind FaultKind
	// At is the body offset where the fault strikes: the flipped byte, the
	// truncation point, or where the stall begins. Zero means the middle of
	// the body.
	At int64
	// Times is how many responses get the fault before it disarms itself;
	// zero means every response.
	Times int
}

// FaultHandle observes and controls an injected fault.
type FaultHandle struct {
	fault   Fault
	hit     chan struct{}
	release chan struct{}

	mu sync.Mutex
	// hits counts faulted responses; released guards closing release.
	hits     int
	released bool
}

// Hit is closed once a response has reached the fault (for Stall: once the
// partial body has been flushed and the response hangs).
func (h *FaultHandle) Hit() <-chan struct{} { return h.hit }

// Hits counts the responses that got the fault so far.
func (h *FaultHandle) Hits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits
}

// Release lets stalled responses, current and future, send the rest of their body.
func (h *FaultHandle) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.released {
		h.released = true
		close(h.release)
	}
}

// arm claims one use of the fault, or reports that it is used up.
func (h *FaultHandle) arm() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fault.Times > 0 && h.hits >= h.fault.Times {
		return false
	}
	h.hits++
	return true
}

func (h *FaultHandle) markHit() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.hit:
	default:
		close(h.hit)
	}
}

// faultTable maps a digest (blob or manifest) to its fault.
type faultTable struct {
	mu     sync.Mutex
	faults map[string]*FaultHandle
}

func newFaultTable() *faultTable { return &faultTable{faults: map[string]*FaultHandle{}} }

func (t *faultTable) lookup(key string) *FaultHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.faults[key]
}

// InjectFault makes GET bodies of digest d, a blob on either listener or a
// manifest, go wrong as f says. It replaces (and releases) any earlier fault
// on d. Faults never touch headers: Content-Length and Docker-Content-Digest
// stay truthful.
func (r *Registry) InjectFault(d digest.Digest, f Fault) *FaultHandle {
	h := &FaultHandle{fault: f, hit: make(chan struct{}), release: make(chan struct{})}
	r.faults.mu.Lock()
	old := r.faults.faults[d.String()]
	r.faults.faults[d.String()] = h
	r.faults.mu.Unlock()
	if old != nil {
		old.Release()
	}
	return h
}

// ClearFault removes d's fault and releases its stalled responses.
func (r *Registry) ClearFault(d digest.Digest) {
	r.faults.mu.Lock()
	old := r.faults.faults[d.String()]
	delete(r.faults.faults, d.String())
	r.faults.mu.Unlock()
	if old != nil {
		old.Release()
	}
}

// chunkSize bounds each write so throttling and faults act at a fine grain
// even when the handler hands over a whole blob in one Write.
const chunkSize = 32 << 10

var errTruncated = errors.New("registrytest: body truncated by injected fault")

// faultWriter applies an armed fault and the throttle to a response body.
type faultWriter struct {
	http.ResponseWriter
	ctx      context.Context
	closing  <-chan struct{}
	faults   *faultTable
	throttle *throttle
	// key is the digest the fault table is consulted with; empty means
	// "read Docker-Content-Digest when the header is written".
	key string

	// cut, when positive, cuts this response's body off at that fraction
	// of its length (a random fault, see RandomFaults).
	cut float64

	wroteHeader bool
	fault       *FaultHandle // armed for this response, or nil
	at          int64
	written     int64
}

func (r *Registry) newFaultWriter(w http.ResponseWriter, req *http.Request, key string, t *throttle) *faultWriter {
	return &faultWriter{
		ResponseWriter: w,
		ctx:            req.Context(),
		closing:        r.active.closing,
		faults:         r.faults,
		throttle:       t,
		key:            key,
	}
}

// Unwrap lets http.ResponseController reach the connection's Flush.
func (f *faultWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

func (f *faultWriter) WriteHeader(code int) {
	if !f.wroteHeader {
		f.wroteHeader = true
		if code == http.StatusOK || code == http.StatusPartialContent {
			f.armFault()
		}
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *faultWriter) armFault() {
	if f.cut > 0 {
		size, _ := strconv.ParseInt(f.Header().Get("Content-Length"), 10, 64)
		f.fault = &FaultHandle{fault: Fault{Kind: Truncate}, hit: make(chan struct{}), release: make(chan struct{})}
		f.at = max(1, int64(float64(size)*f.cut))
		return
	}
	key := f.key
	if key == "" {
		key = f.Header().Get("Docker-Content-Digest")
	}
	h := f.faults.lookup(key)
	if h == nil || !h.arm() {
		return
	}
	f.fault = h
	f.at = h.fault.At
	if f.at <= 0 {
		size, _ := strconv.ParseInt(f.Header().Get("Content-Length"), 10, 64)
		f.at = size / 2
	}
}

func (f *faultWriter) Write(p []byte) (int, error) {
	if !f.wroteHeader {
		f.WriteHeader(http.StatusOK)
	}
	total := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), chunkSize)]
		n, err := f.writeChunk(chunk)
		total += n
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// writeChunk writes a prefix of chunk, stopping at the fault offset so the
// fault strikes exactly there.
func (f *faultWriter) writeChunk(chunk []byte) (int, error) {
	if f.fault != nil && f.written == f.at {
		if err := f.strike(); err != nil {
			return 0, err
		}
	}
	if f.fault != nil && f.written < f.at && f.written+int64(len(chunk)) > f.at {
		chunk = chunk[:f.at-f.written]
	}
	if f.fault != nil && f.fault.fault.Kind == Corrupt && f.written == f.at {
		flipped := append([]byte(nil), chunk...)
		flipped[0] ^= 0xff
		chunk = flipped
	}
	if err := f.throttle.wait(f.ctx, f.closing, len(chunk)); err != nil {
		return 0, err
	}
	n, err := f.ResponseWriter.Write(chunk)
	f.written += int64(n)
	return n, err
}

// strike runs a Truncate or Stall fault at the fault offset.
func (f *faultWriter) strike() error {
	h := f.fault
	switch h.fault.Kind {
	case Truncate:
		// Returning an error makes the handler stop; net/http then sees
		// fewer bytes than Content-Length and closes the connection.
		http.NewResponseController(f.ResponseWriter).Flush()
		h.markHit()
		return errTruncated
	case Stall:
		http.NewResponseController(f.ResponseWriter).Flush()
		h.markHit()
		select {
		case <-h.release:
		case <-f.ctx.Done():
			return f.ctx.Err()
		case <-f.closing:
			return errClosing
		}
	case Corrupt:
		h.markHit()
	}
	return nil
}

// throttle paces blob bodies so together they stay under a byte rate.
type throttle struct {
	mu sync.Mutex
	// rate is bytes per second (<= 0: unlimited); next is when the link
	// is free again.
	rate int64
	next time.Time
}

func (t *throttle) setRate(bytesPerSecond int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rate = bytesPerSecond
	t.next = time.Time{}
}

// wait reserves the link for n bytes and sleeps until they would have
// passed through it. A nil throttle never waits.
func (t *throttle) wait(ctx context.Context, closing <-chan struct{}, n int) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.rate <= 0 {
		t.mu.Unlock()
		return nil
	}
	now := time.Now()
	start := t.next
	if start.Before(now) {
		start = now
	}
	t.next = start.Add(time.Duration(int64(n) * int64(time.Second) / t.rate))
	done := t.next
	t.mu.Unlock()

	timer := time.NewTimer(done.Sub(now))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closing:
		return errClosing
	}
}
