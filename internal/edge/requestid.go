package edge

import (
	"crypto/rand"
	"net/http"
)

// RequestIDHeader names the request's ID: on the request the handler
// behind Handler sees, and on the response. Log lines about the request
// carry it, so that a client's, a proxy's and the mirror's records of one
// request can be matched.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLength bounds an ID a proxy assigned: nginx's $request_id
// has 32 characters, a UUID 36; more is not an ID but a payload.
const maxRequestIDLength = 128

// withRequestID gives r its ID, on a copy of r with its own header: the
// one a trusted proxy assigned when it is well formed (apply has deleted
// the header from everyone else's requests), or a new random one.
func withRequestID(r *http.Request) (*http.Request, string) {
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		id = rand.Text()
	}
	r = r.WithContext(r.Context())
	r.Header = r.Header.Clone()
	r.Header.Set(RequestIDHeader, id)
	return r, id
}

// validRequestID accepts printable ASCII without spaces, quotes or
// backslashes, so an ID can be pasted into a query or grep as it is.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '\\' {
			return false
		}
	}
	return true
}
