package cache

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
)

// useTable counts the open readers of every blob and marks the blobs being
// removed, so that removal and reading exclude each other: a blob with a
// reader is never removed (the reader always gets every byte, and a blob
// being read is by definition not the least recently used), and a blob being
// removed is reported absent instead of being opened half-deleted.
//
// Lock order: the lock of Store.downloads before useTable.mu.
type useTable struct {
	mu       sync.Mutex
	readers  map[digest.Digest]int
	removing map[digest.Digest]chan struct{} // closed when the removal ends
}

// acquire registers a reader of d. It fails, returning the channel that is
// closed when the removal is over, while d is being removed.
func (u *useTable) acquire(d digest.Digest) (removed <-chan struct{}, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if done, busy := u.removing[d]; busy {
		return done, false
	}
	if u.readers == nil {
		u.readers = make(map[digest.Digest]int)
	}
	u.readers[d]++
	return nil, true
}

// release unregisters a reader of d.
func (u *useTable) release(d digest.Digest) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.readers[d] <= 1 {
		delete(u.readers, d)
		return
	}
	u.readers[d]--
}

// claim marks the digests that have no reader, and for which busy reports
// false, as being removed, and returns them. The rest are in use.
func (u *useTable) claim(ds []digest.Digest, busy func(digest.Digest) bool) (claimed, inUse []digest.Digest) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.removing == nil {
		u.removing = make(map[digest.Digest]chan struct{})
	}
	for _, d := range ds {
		_, removing := u.removing[d]
		if removing || u.readers[d] > 0 || busy(d) {
			inUse = append(inUse, d)
			continue
		}
		u.removing[d] = make(chan struct{})
		claimed = append(claimed, d)
	}
	return claimed, inUse
}

// unclaim ends the removal of ds and wakes whoever waits for it.
func (u *useTable) unclaim(ds []digest.Digest) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, d := range ds {
		if done, ok := u.removing[d]; ok {
			close(done)
			delete(u.removing, d)
		}
	}
}

// errRemoving reports a blob that is absent because it is being removed.
func errRemoving(d digest.Digest) error {
	return fmt.Errorf("read blob %s: being removed: %w", d, fs.ErrNotExist)
}

// usedReader gives back a reader's registration when it is closed.
type usedReader struct {
	io.ReadCloser
	release   func()
	closeOnce sync.Once
}

// VerifiedFile returns the blob file behind the reader when it reads one
// from the cache, nil when it streams a download in progress. Every byte of
// such a file has hashed to its digest in this process (see checkContent),
// so the caller may have the kernel send it (sendfile) instead of reading
// it. The file shares the reader's offset, and closing the reader closes it.
func (r *usedReader) VerifiedFile() *os.File {
	f, _ := r.ReadCloser.(*os.File)
	return f
}

func (r *usedReader) Close() error {
	err := r.ReadCloser.Close()
	r.closeOnce.Do(r.release)
	return err
}
