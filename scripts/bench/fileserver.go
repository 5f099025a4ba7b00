package main

import (
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// fileServer serves the blob files of a data directory with the standard
// library's http.FileServer (sendfile, no index, no hashing): the practical
// limit for a warm mirror on this machine. It only maps the registry's blob
// URLs onto the cache's file layout, blobs/<algorithm>/<first two hex>/<hex>,
// so the same puller can fetch from it.
type fileServer struct {
	srv *http.Server
	url string
}

func startFileServer(blobRoot string) (*fileServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	files := http.FileServer(http.Dir(blobRoot))
	fs := &fileServer{
		srv: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := blobFilePath(r.URL.Path)
			if !ok {
				http.NotFound(w, r)
				return
			}
			r.URL.Path = p
			files.ServeHTTP(w, r)
		})},
		url: "http://" + ln.Addr().String(),
	}
	go fs.srv.Serve(ln)
	return fs, nil
}

// blobFilePath maps /v2/<repo>/blobs/<digest> to the blob's path under the
// blob root.
func blobFilePath(urlPath string) (string, bool) {
	i := strings.LastIndex(urlPath, "/blobs/")
	if i < 0 {
		return "", false
	}
	d, err := digest.Parse(urlPath[i+len("/blobs/"):])
	if err != nil {
		return "", false
	}
	hex := d.Encoded()
	return path.Join("/", string(d.Algorithm()), hex[:2], hex), true
}

func (fs *fileServer) close() { fs.srv.Close() }
