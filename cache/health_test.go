package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sabotage func(t *testing.T, s *Store)
		wantErr  error // nil: ready; errAny: any error
	}{
		{name: "healthy"},
		{name: "closed", sabotage: func(t *testing.T, s *Store) { s.Close() }, wantErr: ErrClosed},
		{name: "data dir not writable", wantErr: errAny, sabotage: func(t *testing.T, s *Store) {
			// A file where the download directory should be: writes fail
			// even for root, which ignores permission bits.
			if err := os.RemoveAll(s.tmpDir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.tmpDir, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{})
			if tt.sabotage != nil {
				tt.sabotage(t, s)
			}
			err := s.Ready(context.Background())
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Ready = %v, want nil", err)
			case tt.wantErr == errAny && err == nil:
				t.Fatal("Ready = nil, want an error")
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("Ready = %v, want %v", err, tt.wantErr)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(s.tmpDir, "ready-*")); len(leftovers) > 0 {
				t.Fatalf("probe files left behind: %v", leftovers)
			}
		})
	}
}

// errAny stands for "some error" in a table.
var errAny = errors.New("any error")
