package main

import (
	"io"
	"sync"
)

// syncWriter serialises writes from the daemon's goroutines into a test buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
