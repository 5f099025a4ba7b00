package admin

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A call crosses the socket as JSON lines: the progress in order, then
// the result; an operation's error comes back as the call's error.
func TestAdminSocketCarriesProgressResultsAndErrors(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "adm") // short: a socket path has a small limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, SocketName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	log := slog.New(slog.DiscardHandler)
	mux := Handler(New(nil, Options{}), log)
	type echo struct{ N int }
	mux.Handle("POST /v1/test/echo", Call(log, func(_ context.Context, req echo, progress func(Progress)) (any, error) {
		for i := range req.N {
			progress(Progress{Phase: "echo", Done: i + 1, Total: req.N})
		}
		return req, nil
	}))
	mux.Handle("POST /v1/test/fail", Call(log, func(context.Context, struct{}, func(Progress)) (any, error) {
		return nil, errors.New("disk on fire")
	}))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, mux, log) }()

	c := NewClient(dir)
	var got echo
	var seen []int
	if err := c.Call(context.Background(), "/v1/test/echo", echo{N: 3}, &got, func(p Progress) { seen = append(seen, p.Done) }); err != nil {
		t.Fatal(err)
	}
	if got.N != 3 || !slices.Equal(seen, []int{1, 2, 3}) {
		t.Errorf("result %+v, progress %v; want N 3 after progress 1, 2, 3", got, seen)
	}
	if err := c.Call(context.Background(), "/v1/test/fail", struct{}{}, &got, nil); err == nil || err.Error() != "daemon: disk on fire" {
		t.Errorf("failing call = %v, want the operation's error", err)
	}

	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	ln.Close()
	if _, err := os.Stat(filepath.Join(dir, SocketName)); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if err := c.Call(context.Background(), StatsPath, struct{}{}, &got, nil); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("call with no daemon = %v, want ErrNoDaemon", err)
	}
}
