package mirror

import "net/http"

// User returns the mirror user that r authenticates as: the user of valid
// Basic credentials or of a valid user token. ok is false for a request
// without credentials, with wrong ones, or with an anonymous token, and
// always on a mirror without hosted repositories, which has no users.
// Other parts of the daemon (the status page) use it to decide what a
// request may see.
func (m *Mirror) User(r *http.Request) (user string, ok bool) {
	if m.hosted == nil {
		return "", false
	}
	user, ok = m.hosted.identify(r)
	if !ok || user == "" {
		return "", false
	}
	return user, true
}
