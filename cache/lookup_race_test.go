package cache

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// rowGate holds the transaction that writes the row of one blob, just
// before it writes it, until the test opens the gate: a lookup meanwhile
// finds no row, though the write that adds it has begun.
type rowGate struct {
	index.DB
	key  []byte
	held chan struct{} // closed once the transaction waits
	open chan struct{}
	once sync.Once
}

func newRowGate(d digest.Digest) *rowGate {
	return &rowGate{key: blobKey(d), held: make(chan struct{}), open: make(chan struct{})}
}

func (g *rowGate) Update(ctx context.Context, fn func(index.Txn) error) error {
	return g.DB.Update(ctx, func(txn index.Txn) error { return fn(gatedTxn{txn, g}) })
}

type gatedTxn struct {
	index.Txn
	g *rowGate
}

func (t gatedTxn) Set(key, value []byte) error {
	if bytes.Equal(key, t.g.key) {
		t.g.once.Do(func() {
			close(t.g.held)
			<-t.g.open
		})
	}
	return t.Txn.Set(key, value)
}

// A lookup that runs while a download of the same blob for the same
// repository is being indexed finds no row; the download commits and
// leaves before the lookup's Fetch. That Fetch must find the blob rather
// than download it a second time.
func TestLookupFetchFindsABlobIndexedDuringTheLookup(t *testing.T) {
	data, d := randomBlob(t, 64<<10)
	gate := newRowGate(d)
	s := openStore(t, Options{wrapIndex: func(db index.DB) index.DB {
		gate.DB = db
		return gate
	}})
	ctx := t.Context()
	var calls atomic.Int32
	first := make(chan error, 1)
	go func() {
		rc, _, _, err := s.FetchBlob(ctx, testRepo, d, 0, bytesFetch(data, int64(len(data)), &calls))
		if err == nil {
			err = readAllEqual(rc, data)
		}
		first <- err
	}()
	<-gate.held
	l, err := s.LookupBlob(ctx, testRepo, d)
	if err != nil || l.Stored() {
		t.Fatalf("LookupBlob while the blob is being indexed: stored %v, %v; want not stored", l != nil && l.Stored(), err)
	}
	close(gate.open)
	if err := <-first; err != nil {
		t.Fatalf("the first download: %v", err)
	}

	rc, _, _, err := l.Fetch(ctx, 0, bytesFetch(data, int64(len(data)), &calls))
	if err != nil {
		t.Fatal(err)
	}
	readAllAndClose(t, rc, data)
	if n := calls.Load(); n != 1 {
		t.Fatalf("the blob was fetched %d times; want once: the lookup's Fetch downloaded it again", n)
	}
}

// readAllEqual reads rc to its end, closes it and checks it read want.
func readAllEqual(rc interface {
	Read([]byte) (int, error)
	Close() error
}, want []byte) error {
	var got bytes.Buffer
	_, err := got.ReadFrom(rc)
	rc.Close()
	if err != nil {
		return err
	}
	if !bytes.Equal(got.Bytes(), want) {
		return errors.New("read other bytes than the blob's")
	}
	return nil
}
