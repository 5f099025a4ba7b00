package statuspage

import (
	_ "embed"
	"net/http"
)

// browsePageHTML is the browse page: repositories, a repository's tags, a
// tag's platforms and an image's layers, read from the repository API
// (/api/v1/repositories) with the browser's own credentials, so it shows
// exactly what the API shows that user. No build step, nothing fetched
// from elsewhere.
var browsePageHTML = withPageStyle(browseHTML)

//go:embed browse.html
var browseHTML []byte

// browseRealm names the browse page in its Basic challenge; the browser
// keeps the credentials for the whole origin, the API included.
const browseRealm = `Basic realm="regmirror", charset="UTF-8"`

// ServeBrowse serves the browse page. With ?login, it first asks the
// browser for the credentials of any user of the mirror, whose rights the
// API then applies.
func (p *Page) ServeBrowse(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.user(r); r.URL.Query().Has("login") && !ok {
		w.Header().Set("WWW-Authenticate", browseRealm)
		http.Error(w, "log in as a user of the mirror", http.StatusUnauthorized)
		return
	}
	writePage(w, browsePageHTML)
}
