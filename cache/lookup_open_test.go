package cache

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// warnings records the messages logged at warning level or above.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *warnings) WithGroup(string) slog.Handler            { return w }

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.mu.Lock()
		w.msgs = append(w.msgs, r.Message)
		w.mu.Unlock()
	}
	return nil
}

func (w *warnings) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

const damagedWarning = "dropping damaged blob from cache index"

// A blob removed between a lookup that found it and Open is reported
// absent, and nothing is logged about damage: the removal was orderly.
func TestLookupOpenAfterRemovalIsAbsentWithoutAlarm(t *testing.T) {
	log := &warnings{}
	s := openStore(t, Options{Logger: slog.New(log)})
	data, d := randomBlob(t, 64<<10)
	fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))
	ctx := t.Context()
	l, err := s.LookupBlob(ctx, testRepo, d)
	if err != nil || !l.Stored() {
		t.Fatalf("LookupBlob: stored %v, %v", l != nil && l.Stored(), err)
	}
	if r, err := s.RemoveBlobs(ctx, []digest.Digest{d}, nil); err != nil || len(r.Removed) != 1 {
		t.Fatalf("RemoveBlobs: %+v, %v", r, err)
	}
	rc, _, err := l.Open(ctx, 0)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open after the removal: %v; want fs.ErrNotExist", err)
	}
	if n := log.count(damagedWarning); n != 0 {
		t.Fatalf("Open after an orderly removal logged %q %d times", damagedWarning, n)
	}
}

// Lookups and Opens race removals and fresh downloads of the same blob:
// every Open either serves exactly the blob's bytes or reports it absent,
// and no removal is mistaken for damage.
func TestLookupOpenRacesRemovalAndRefill(t *testing.T) {
	log := &warnings{}
	s := openStore(t, Options{Logger: slog.New(log)})
	data, d := randomBlob(t, 256<<10)
	ctx := t.Context()
	fetchAll(t, s, d, bytesFetch(data, int64(len(data)), nil))

	const rounds = 50
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the evictor and the downloads that bring the blob back
		defer wg.Done()
		for range rounds {
			if _, err := s.RemoveBlobs(ctx, []digest.Digest{d}, nil); err != nil {
				t.Errorf("RemoveBlobs: %v", err)
				return
			}
			rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, bytesFetch(data, int64(len(data)), nil))
			if err != nil {
				t.Errorf("FetchBlob: %v", err)
				return
			}
			if err := readAllEqual(rc, data); err != nil {
				t.Errorf("FetchBlob: %v", err)
				return
			}
		}
	}()
	go func() { // the pulls
		defer wg.Done()
		for range rounds * 4 {
			l, err := s.LookupBlob(ctx, testRepo, d)
			if err != nil {
				t.Errorf("LookupBlob: %v", err)
				return
			}
			if !l.Stored() {
				continue
			}
			rc, _, err := l.Open(ctx, 0)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			if err := readAllEqual(rc, data); err != nil {
				t.Errorf("Open: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	if n := log.count(damagedWarning); n != 0 {
		t.Fatalf("removals raced with Open logged %q %d times", damagedWarning, n)
	}
}
