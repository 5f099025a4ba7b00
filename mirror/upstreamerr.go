package mirror

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// httpStatuser is implemented by upstream errors that carry the registry's answer.
type httpStatuser interface{ HTTPStatus() int }

// upstreamStatus is the HTTP status an upstream answered with, or 0 when it
// did not answer (network failure, timeout).
func upstreamStatus(err error) int {
	var s httpStatuser
	if errors.As(err, &s) {
		return s.HTTPStatus()
	}
	return 0
}

// fromUpstream turns a failure to fetch from host into what the client sees.
// Pull paths never answer 401 or 429: dockerd would fall back to Docker Hub
// and nothing would be cached, so those become 403 and 503.
func fromUpstream(err error, host string, k kind) error {
	var mirrorErr *Error
	if errors.As(err, &mirrorErr) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err // the client went away; nobody reads the answer
	}
	status := upstreamStatus(err)
	var tooLarge interface{ BlobTooLarge() bool } // the cache's size cap refused the blob
	switch {
	case errors.As(err, &tooLarge) && tooLarge.BlobTooLarge():
		return &Error{Code: ociserver.CodeDenied, Message: "blob on " + host + " is larger than this mirror accepts", Err: err}
	case status == http.StatusNotFound || errors.Is(err, fs.ErrNotExist):
		return &Error{Code: notFoundCode(k), Message: "not found on " + host, Err: err}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &Error{Code: ociserver.CodeDenied, Message: "upstream " + host + " denied access; check the mirror's credentials for it", Err: err}
	case status == http.StatusTooManyRequests:
		return &Error{Code: ociserver.CodeUnavailable, Message: "upstream " + host + " is rate limiting the mirror; try again later", Err: err}
	case status != 0:
		return &Error{Code: ociserver.CodeUnavailable, Status: http.StatusBadGateway, Message: "upstream " + host + " failed", Err: err}
	case hint(err) != "":
		return &Error{Code: ociserver.CodeUnavailable, Status: http.StatusBadGateway, Message: "upstream " + host + ": " + hint(err), Err: err}
	case isTimeout(err):
		return &Error{Code: ociserver.CodeUnavailable, Status: http.StatusGatewayTimeout, Message: "upstream " + host + " timed out", Err: err}
	default:
		return &Error{Code: ociserver.CodeUnavailable, Status: http.StatusBadGateway, Message: "upstream " + host + " is unreachable", Err: err}
	}
}

// operatorHinter is implemented by upstream failures only the mirror's
// operator can fix, such as a certificate the mirror does not trust; the
// hint names the problem and the setting, and is fit for clients to read.
type operatorHinter interface{ OperatorHint() string }

// hint is err's operator hint, or "".
func hint(err error) string {
	var h operatorHinter
	if errors.As(err, &h) {
		return h.OperatorHint()
	}
	return ""
}

func notFoundCode(k kind) string {
	switch k {
	case ociserver.KindBlob:
		return ociserver.CodeBlobUnknown
	case ociserver.KindManifest:
		return ociserver.CodeManifestUnknown
	default:
		return ociserver.CodeNameUnknown
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
