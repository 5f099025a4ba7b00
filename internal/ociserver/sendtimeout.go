package ociserver

import (
	"net/http"
	"time"
)

// DefaultSendTimeout is the default of Options.SendTimeout: a client must
// take a 128 KiB chunk within a minute, about 2 KiB/s, far below any link
// a registry client pulls over.
const DefaultSendTimeout = time.Minute

// deadlineWriter sets a write deadline on the connection before each write,
// so a write that a client does not drain in time fails instead of
// blocking; a client reading at a byte a second is dropped after one
// timeout rather than holding the connection for days.
type deadlineWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	now     func() time.Time
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration) *deadlineWriter {
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: timeout, now: time.Now}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	// A writer without deadlines (a test recorder) just writes.
	_ = d.rc.SetWriteDeadline(d.now().Add(d.timeout))
	return d.w.Write(p)
}

// clear lifts the deadline, so that the connection's next response on a
// kept-alive connection is not cut short by it.
func (d *deadlineWriter) clear() {
	_ = d.rc.SetWriteDeadline(time.Time{})
}
