package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Ready reports whether the Store can serve and fill the cache right now:
// the index is open and the data directory is writable. It costs a few
// system calls and no index scan, so a load balancer may call it as often
// as it likes. Failures wrap ErrClosed or carry the failing system call.
func (s *Store) Ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.indexOpen(); err != nil {
		return err
	}
	return s.probeWritable()
}

func (s *Store) indexOpen() error {
	s.downloads.Lock()
	closed := s.closed
	s.downloads.Unlock()
	if closed {
		return fmt.Errorf("index: %w", ErrClosed)
	}
	return nil
}

// probeWritable creates and removes a file where downloads are written, on
// the blobs' filesystem: a read-only remount or an exhausted inode table
// shows up here before a client's pull fails on it.
func (s *Store) probeWritable() error {
	f, err := os.CreateTemp(s.tmpDir, "ready-*")
	if err != nil {
		return fmt.Errorf("data directory not writable: %w", err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("data directory not writable: %w", err)
	}
	return nil
}
