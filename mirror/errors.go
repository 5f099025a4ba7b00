package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the OCI distribution specification, plus UNAVAILABLE,
// which distribution uses when a dependency (here: the upstream) fails.
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeTagInvalid          = "TAG_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeRangeInvalid        = "RANGE_INVALID"
	codeUnavailable         = "UNAVAILABLE"
	codeUnknown             = "UNKNOWN"
)

// statusByCode is the one table from error code to HTTP status.
var statusByCode = map[string]int{
	codeBlobUnknown:         http.StatusNotFound,
	codeBlobUploadInvalid:   http.StatusBadRequest,
	codeBlobUploadUnknown:   http.StatusNotFound,
	codeDigestInvalid:       http.StatusBadRequest,
	codeManifestBlobUnknown: http.StatusBadRequest,
	codeManifestInvalid:     http.StatusBadRequest,
	codeManifestUnknown:     http.StatusNotFound,
	codeNameInvalid:         http.StatusBadRequest,
	codeNameUnknown:         http.StatusNotFound,
	codeSizeInvalid:         http.StatusBadRequest,
	codeTagInvalid:          http.StatusBadRequest,
	codeUnauthorized:        http.StatusUnauthorized,
	codeDenied:              http.StatusForbidden,
	codeUnsupported:         http.StatusMethodNotAllowed,
	codeRangeInvalid:        http.StatusRequestedRangeNotSatisfiable,
	codeUnavailable:         http.StatusServiceUnavailable,
	codeUnknown:             http.StatusInternalServerError,
}

// Error is an error the mirror reports to a client in the OCI error format.
type Error struct {
	Code    string
	Message string
	// Status overrides the status of Code when non-zero; upstream failures
	// use it to tell 502 (bad gateway) from 504 (timeout).
	Status int
	// RetryAfter, when set, is sent as the Retry-After header: seconds.
	RetryAfter string
	// Err is the underlying cause, kept for logs; it is never sent to clients.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status the error is answered with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := statusByCode[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError is the one place an error becomes an HTTP response. Errors that
// are not *Error are internal: the client learns only that, the log gets the rest.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: codeUnknown, Message: "internal error", Err: err}
	}
	status := e.HTTPStatus()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.Header().Del("Docker-Content-Digest")
	if e.RetryAfter != "" {
		w.Header().Set("Retry-After", e.RetryAfter)
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message}}})
}
