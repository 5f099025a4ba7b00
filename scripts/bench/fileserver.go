package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
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

// serveFilesFlag runs this binary as a plain file server over a blob root
// (the crowd section's own process, so that its CPU time is its own).
const serveFilesFlag = "serve-files"

// serveFiles serves blobRoot until stdin closes, after printing its URL.
func serveFiles(blobRoot string) error {
	fs, err := startFileServer(blobRoot)
	if err != nil {
		return err
	}
	defer fs.close()
	fmt.Println(fs.url)
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

// fileServerProcess is a file server running in a process of its own.
type fileServerProcess struct {
	cmd   *exec.Cmd
	stdin io.Closer
	url   string
}

func startFileServerProcess(ctx context.Context, blobRoot string) (*fileServerProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-"+serveFilesFlag, blobRoot)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("file server process: %w", err)
	}
	return &fileServerProcess{cmd: cmd, stdin: stdin, url: strings.TrimSpace(url)}, nil
}

func (p *fileServerProcess) pid() int { return p.cmd.Process.Pid }

func (p *fileServerProcess) close() error {
	p.stdin.Close()
	return p.cmd.Wait()
}

// downloadTogether starts n clients downloading img's blobs from url at
// the same moment, without resolving its tag (a file server has no
// manifests).
func downloadTogether(ctx context.Context, url string, img image, n, concurrency int) (crowd, error) {
	return together(ctx, n, func(ctx context.Context, _ int) (pullResult, error) {
		p := newPuller(url, concurrency)
		defer p.close()
		return p.download(ctx, img.repo, img.blobs)
	})
}
