package ociserver

import (
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSendBlob compares the two ways a blob leaves the mirror over a
// loopback connection: sendFile (a verified cache file handed to the
// kernel) and copyStream (a download's reader copied through a buffer).
// server-cpu-s/GB is the CPU time of the sending handler's thread (locked
// to it) per 10^9 bytes, system calls included; the client's is not.
func BenchmarkSendBlob(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "blob")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	span := byteRange{start: 0, end: size - 1}
	for _, bc := range []struct {
		name string
		send func(w http.ResponseWriter, f *os.File) (int64, error)
	}{
		{"sendfile", func(w http.ResponseWriter, f *os.File) (int64, error) {
			return sendFile(w, f, span, time.Minute)
		}},
		{"copy", func(w http.ResponseWriter, f *os.File) (int64, error) {
			return copyStream(w, &Blob{Body: f, Size: size}, span, time.Minute)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var serverCPU atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				start := threadCPU()
				defer func() { serverCPU.Add(int64(threadCPU() - start)) }()
				f, err := os.Open(path)
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				defer f.Close()
				w.Header().Set("Content-Length", "67108864")
				if _, err := bc.send(w, f); err != nil {
					panic(http.ErrAbortHandler)
				}
			}))
			defer srv.Close()
			b.SetBytes(size)
			for b.Loop() {
				resp, err := srv.Client().Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("got %d bytes, %v", n, err)
				}
			}
			srv.Close() // the last handler has returned
			b.ReportMetric(time.Duration(serverCPU.Load()).Seconds()/(float64(b.N)*size/1e9), "server-cpu-s/GB")
		})
	}
}

// threadCPU is the user and system CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rusageThread is Linux's RUSAGE_THREAD.
const rusageThread = 1
