package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinel causes, matched with errors.Is through an *Error.
var (
	// ErrDigestMismatch: the bytes received do not hash to the expected digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrManifestTooLarge: a manifest exceeds MaxManifestSize.
	ErrManifestTooLarge = errors.New("manifest too large")
	// ErrUnsupportedDigest: a digest uses an algorithm other than sha256 and sha512.
	ErrUnsupportedDigest = errors.New("unsupported digest algorithm")
)

// Error is a failed upstream operation. It never holds credentials, tokens,
// Authorization headers, or the user info and query values of a URL (a
// signed CDN URL is a credential too).
type Error struct {
	// Host is the configured registry host, e.g. "docker.io".
	Host string
	// Op is the operation, e.g. "get manifest"; Repo and Ref what it was for.
	Op, Repo, Ref string
	// StatusCode is the upstream's HTTP status, or 0 when no answer arrived
	// (network failure, timeout).
	StatusCode int
	// Code and Message are the registry's error code (e.g. MANIFEST_UNKNOWN,
	// UNAUTHORIZED, TOOMANYREQUESTS) and text, from the OCI error body when
	// there was one, else derived from the status.
	Code, Message string
	// Err is the underlying cause: a network error, a context error, a
	// sentinel such as ErrDigestMismatch, or ggcr's *transport.Error.
	Err error

	temporary bool
}

// Error says what failed where, with the registry's status and code.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s: %s %s", e.Host, e.Op, e.Repo)
	if e.Ref != "" {
		fmt.Fprintf(&b, " %s", e.Ref)
	}
	switch {
	case e.StatusCode == 0:
		fmt.Fprintf(&b, ": %v", e.Err)
	case e.Code != "" && e.Message != "":
		fmt.Fprintf(&b, ": %d %s: %s", e.StatusCode, e.Code, e.Message)
	default:
		fmt.Fprintf(&b, ": %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the upstream's HTTP status, 0 when it did not answer.
func (e *Error) HTTPStatus() int { return e.StatusCode }

// Temporary reports whether retrying may help: network failures, timeouts,
// 408, 429, 5xx and corrupted transfers are temporary; 401, 403 and 404 are not.
func (e *Error) Temporary() bool { return e.temporary }

// isTemporaryStatus classifies an HTTP status.
func isTemporaryStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// statusCodes is the OCI error code a registry would send for a status,
// used when its body carried none (HEAD responses, token endpoints).
var statusCodes = map[int]string{
	http.StatusUnauthorized:       "UNAUTHORIZED",
	http.StatusForbidden:          "DENIED",
	http.StatusTooManyRequests:    "TOOMANYREQUESTS",
	http.StatusServiceUnavailable: "UNAVAILABLE",
}

// opError describes what an operation was doing when it failed.
type opError struct {
	host, op, repo, ref string
	notFoundCode        string // the code a bare 404 means for this operation
}

// fromStatus makes an *Error from an upstream answer with an unexpected
// status. terr is ggcr's parsed error body, if any.
func (o opError) fromStatus(status int, terr *transport.Error) *Error {
	e := &Error{
		Host: o.host, Op: o.op, Repo: o.repo, Ref: o.ref,
		StatusCode: status,
		temporary:  isTemporaryStatus(status),
	}
	if terr != nil {
		e.Err = terr
		if len(terr.Errors) > 0 {
			e.Code = string(terr.Errors[0].Code)
			e.Message = truncate(terr.Errors[0].Message, 256)
		}
	}
	if e.Code == "" {
		e.Code = statusCodes[status]
		if status == http.StatusNotFound {
			e.Code = o.notFoundCode
		}
		e.Message = strings.ToLower(http.StatusText(status))
	}
	return e
}

// fromErr makes an *Error from a failure with no usable answer, or from
// ggcr's error when it got one (e.g. the token endpoint refused).
func (o opError) fromErr(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return o.fromStatus(terr.StatusCode, terr)
	}
	redactURLErrors(err)
	return &Error{
		Host: o.host, Op: o.op, Repo: o.repo, Ref: o.ref,
		Err: err,
		// The caller's own cancellation is final, and so are the guard
		// withholding credentials and the address policy; anything else
		// that kept the upstream from answering (refused, reset, timed
		// out) may pass. A certificate problem needs the operator.
		temporary: !errors.Is(err, context.Canceled) && !errors.Is(err, ErrCredentialsWithheld) && !errors.Is(err, ErrNotPublic) &&
			!errors.As(err, new(*CertificateError)),
	}
}

// redactURLErrors strips user info and query values from the URL of every
// *url.Error in err's chain. net/http names the request's URL in its
// errors, and a blob redirect's URL is signed (X-Amz-Signature and the
// like): whoever reads the log could download with it. The errors were
// made for this one request, so changing them in place is safe.
func redactURLErrors(err error) {
	switch e := err.(type) {
	case *url.Error:
		e.URL = redactURL(e.URL)
		redactURLErrors(e.Err)
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			redactURLErrors(inner)
		}
	case interface{ Unwrap() error }:
		redactURLErrors(e.Unwrap())
	}
}

// redactURL is rawURL without user info and fragment, its query values
// replaced by REDACTED (the keys stay: they say what kind of URL it was).
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User, u.Fragment, u.RawFragment = nil, "", ""
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// skipped makes the *Error for an operation that was not sent because the
// upstream is paused or its breaker is open, until the given time.
func (o opError) skipped(status int, code string, cause error, until time.Time) *Error {
	return &Error{
		Host: o.host, Op: o.op, Repo: o.repo, Ref: o.ref,
		StatusCode: status, Code: code,
		Message: "not asking the upstream before " + until.UTC().Format(time.RFC3339),
		Err:     cause, temporary: true,
	}
}

// statusOf is the upstream's HTTP status in err, 0 when there is none.
func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// badContent makes an *Error for an answer whose status was fine but whose
// body was not (wrong digest, too large).
func (o opError) badContent(status int, code string, temporary bool, cause error, msg string) *Error {
	return &Error{
		Host: o.host, Op: o.op, Repo: o.repo, Ref: o.ref,
		StatusCode: status, Code: code, Message: msg, Err: cause,
		temporary: temporary,
	}
}

// metricLabel is the operation as a metric label value, e.g. "get_manifest".
func (o opError) metricLabel() string { return strings.ReplaceAll(o.op, " ", "_") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// isTemporary reports whether err says retrying may help.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
