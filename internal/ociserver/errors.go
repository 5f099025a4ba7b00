package ociserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the OCI distribution specification, plus UNAVAILABLE,
// which distribution uses when a dependency (here: the upstream) fails.
const (
	CodeBlobUnknown         = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       = "DIGEST_INVALID"
	CodeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     = "MANIFEST_INVALID"
	CodeManifestUnknown     = "MANIFEST_UNKNOWN"
	CodeNameInvalid         = "NAME_INVALID"
	CodeNameUnknown         = "NAME_UNKNOWN"
	CodeSizeInvalid         = "SIZE_INVALID"
	CodeTagInvalid          = "TAG_INVALID"
	CodeUnauthorized        = "UNAUTHORIZED"
	CodeDenied              = "DENIED"
	CodeUnsupported         = "UNSUPPORTED"
	CodeRangeInvalid        = "RANGE_INVALID"
	CodeUnavailable         = "UNAVAILABLE"
	CodeUnknown             = "UNKNOWN"
)

// statusByCode is the one table from error code to HTTP status.
var statusByCode = map[string]int{
	CodeBlobUnknown:         http.StatusNotFound,
	CodeBlobUploadInvalid:   http.StatusBadRequest,
	CodeBlobUploadUnknown:   http.StatusNotFound,
	CodeDigestInvalid:       http.StatusBadRequest,
	CodeManifestBlobUnknown: http.StatusBadRequest,
	CodeManifestInvalid:     http.StatusBadRequest,
	CodeManifestUnknown:     http.StatusNotFound,
	CodeNameInvalid:         http.StatusBadRequest,
	CodeNameUnknown:         http.StatusNotFound,
	CodeSizeInvalid:         http.StatusBadRequest,
	CodeTagInvalid:          http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeDenied:              http.StatusForbidden,
	CodeUnsupported:         http.StatusMethodNotAllowed,
	CodeRangeInvalid:        http.StatusRequestedRangeNotSatisfiable,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeUnknown:             http.StatusInternalServerError,
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
	// Challenge, when set, is sent as the WWW-Authenticate header of a 401.
	Challenge string
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

func NewError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError is the one place an error becomes an HTTP response. Errors that
// are not *Error are internal: the client learns only that, the log gets the rest.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeUnknown, Message: "internal error", Err: err}
	}
	status := e.HTTPStatus()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.Header().Del("Docker-Content-Digest")
	if e.RetryAfter != "" {
		w.Header().Set("Retry-After", e.RetryAfter)
	}
	if e.Challenge != "" {
		w.Header().Set("WWW-Authenticate", e.Challenge)
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message}}})
}
