package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// An upload session is a directory <data>/uploads/<id> holding "repository",
// the hosted repository it belongs to, "owner", the user who opened it (for
// the per-user session cap), and "data", the bytes received so far.
// Sessions live on the blobs' filesystem, so a finished upload is renamed
// into the blob tree rather than copied, and they survive a restart, so a
// client can resume an interrupted upload. The data file's modification time
// is the session's last activity, which its expiry counts from; it is set
// from the store's clock, so that expiry follows that clock.
const (
	sessionRepoFile  = "repository"
	sessionOwnerFile = "owner"
	sessionDataFile  = "data"
	sessionIDBytes   = 16
)

// StartUpload opens an empty upload session in repository name and returns
// its id, which is unguessable. It belongs to no user: StartUserUpload opens
// the sessions of pushes.
func (h *Hosted) StartUpload(ctx context.Context, name string) (string, error) {
	return h.startUpload(ctx, name, "")
}

// StartUserUpload is StartUpload for user, who may hold at most maxSessions
// sessions that have not expired (negative: any number); one more fails
// with a *QuotaError.
func (h *Hosted) StartUserUpload(ctx context.Context, name, user string, maxSessions int) (string, error) {
	unlock, err := h.sessions.lock(ctx, userLockKey(user))
	if err != nil {
		return "", err
	}
	defer unlock()
	if maxSessions >= 0 {
		open, err := h.openSessions(ctx, user)
		if err != nil {
			return "", fmt.Errorf("start upload: %w", err)
		}
		if open >= maxSessions {
			return "", fmt.Errorf("start upload: %w", &QuotaError{User: user, What: quotaSessions, Limit: int64(maxSessions)})
		}
	}
	return h.startUpload(ctx, name, user)
}

func (h *Hosted) startUpload(ctx context.Context, name, owner string) (string, error) {
	if err := checkName("repository", name); err != nil {
		return "", fmt.Errorf("start upload: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id := newSessionID()
	dir := h.sessionDir(id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("start upload: %w", err)
	}
	err := errors.Join(
		writeFileSync(filepath.Join(dir, sessionRepoFile), []byte(name)),
		writeFileSync(filepath.Join(dir, sessionOwnerFile), []byte(owner)),
		writeFileSync(filepath.Join(dir, sessionDataFile), nil),
		h.touch(id),
		syncDir(h.uploadDir),
	)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("start upload: %w", err)
	}
	return id, nil
}

// UploadSize returns how many bytes upload id of repository name holds.
func (h *Hosted) UploadSize(ctx context.Context, name, id string) (int64, error) {
	unlock, err := h.sessions.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	size, err := h.openSession(name, id)
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", id, err)
	}
	return size, nil
}

// WriteUpload appends body to upload id of repository name and returns the
// upload's new size. offset must be the upload's current size, else it fails
// with an *OffsetError. What was received before body failed is
// kept, and durable when WriteUpload returns, so the client can resume from
// the returned size.
func (h *Hosted) WriteUpload(ctx context.Context, name, id string, offset int64, body io.Reader) (int64, error) {
	unlock, err := h.sessions.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	size, err := h.openSession(name, id)
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", id, err)
	}
	if offset != size {
		return size, fmt.Errorf("upload %s: %w", id, &OffsetError{Offset: offset, Size: size})
	}
	f, err := os.OpenFile(filepath.Join(h.sessionDir(id), sessionDataFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return size, fmt.Errorf("upload %s: %w", id, err)
	}
	n, copyErr := io.Copy(f, body)
	err = errors.Join(copyErr, f.Sync(), f.Close(), h.touch(id))
	if err != nil {
		return size + n, fmt.Errorf("upload %s: %w", id, err)
	}
	return size + n, nil
}

// CommitUpload ends upload id of repository name: it verifies the bytes hash
// to d, moves them into the store unless the store has d already, and links
// d into the repository. It returns the blob's size. When the bytes do not
// hash to d it fails with a *DigestError and discards the upload: nothing
// is stored. The blob is charged to no user: CommitUserUpload ends pushes.
func (h *Hosted) CommitUpload(ctx context.Context, name, id string, d digest.Digest) (int64, error) {
	return h.commitUpload(ctx, name, id, d, nil)
}

// CommitUserUpload is CommitUpload that charges the blob to user, whose
// stored pushed blobs may total at most maxStorage bytes (negative: no
// cap). An upload that would pass it is discarded and fails with a
// *QuotaError; nothing is stored.
func (h *Hosted) CommitUserUpload(ctx context.Context, name, id, user string, d digest.Digest, maxStorage int64) (int64, error) {
	unlock, err := h.sessions.lock(ctx, userLockKey(user))
	if err != nil {
		return 0, err
	}
	defer unlock()
	return h.commitUpload(ctx, name, id, d, &charge{user: user, limit: maxStorage})
}

func (h *Hosted) commitUpload(ctx context.Context, name, id string, d digest.Digest, c *charge) (int64, error) {
	if err := checkHosted(name, d); err != nil {
		return 0, fmt.Errorf("commit upload %s: %w", id, err)
	}
	unlock, err := h.sessions.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	size, err := h.openSession(name, id)
	if err != nil {
		return 0, fmt.Errorf("commit upload %s: %w", id, err)
	}
	data := filepath.Join(h.sessionDir(id), sessionDataFile)
	if got, err := hashPath(ctx, data, d.Algorithm()); err != nil {
		return 0, fmt.Errorf("commit upload %s: %w", id, err)
	} else if got != d {
		os.RemoveAll(h.sessionDir(id))
		return 0, fmt.Errorf("commit upload %s: %w", id, &DigestError{Want: d, Got: got})
	}
	if err := h.checkCharge(ctx, c, d, size); err != nil {
		if errors.As(err, new(*QuotaError)) {
			os.RemoveAll(h.sessionDir(id))
		}
		return 0, fmt.Errorf("commit upload %s: %w", id, err)
	}
	if err := h.publishUpload(ctx, name, d, data, size, c); err != nil {
		return 0, fmt.Errorf("commit upload %s: %w", id, err)
	}
	if err := os.RemoveAll(h.sessionDir(id)); err != nil {
		h.s.log.Warn("remove finished upload", "upload", id, "err", err)
	}
	return size, nil
}

// publishUpload makes the verified file at path the blob d of repository
// name. It holds d as if reading it, so eviction cannot remove the blob
// between the file's rename and the index's commit.
func (h *Hosted) publishUpload(ctx context.Context, name string, d digest.Digest, path string, size int64, c *charge) error {
	release, err := h.pin(ctx, d)
	if err != nil {
		return err
	}
	defer release()
	if indexed, err := h.s.hasBlob(ctx, d); err != nil {
		return err
	} else if !indexed {
		if err := h.s.commitFile(ctx, d, path); err != nil {
			return err
		}
	}
	return h.commitHostedBlob(ctx, name, d, size, c)
}

// fileCommitter is a blob store that can take a complete, synced file as
// a blob without copying its bytes: the local one renames it into place.
type fileCommitter interface {
	// CommitFile makes the file at path, on the store's filesystem, the
	// blob d, as Writer.Commit would, by renaming it: path is gone
	// afterwards. (commitFile's copy for other stores leaves path to the
	// caller, which removes the upload's session directory.)
	CommitFile(ctx context.Context, d digest.Digest, path string) error
}

var _ fileCommitter = (*fileBlobs)(nil)

// commitFile makes the verified upload at path the blob d: renamed in when
// the store keeps files, else copied in.
func (s *Store) commitFile(ctx context.Context, d digest.Digest, path string) error {
	if fc, ok := s.blobs.(fileCommitter); ok {
		return fc.CommitFile(ctx, d, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := s.blobs.Create(ctx, d)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("copy upload into the blob store: %w", err)
	}
	return w.Commit(ctx)
}

// commitHostedBlob indexes the blob file d, if it is not indexed yet, and
// links it into repository name and charges it to c's user (when c is
// set), in one transaction.
func (h *Hosted) commitHostedBlob(ctx context.Context, name string, d digest.Digest, size int64, c *charge) error {
	return h.s.indexBlob(ctx, d, size, func(txn index.Txn) error {
		if c != nil {
			if err := c.record(txn, d, size); err != nil {
				return err
			}
		}
		return link(txn, name, d, kindBlob)
	})
}

// CancelUpload discards upload id of repository name.
func (h *Hosted) CancelUpload(ctx context.Context, name, id string) error {
	unlock, err := h.sessions.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := h.openSession(name, id); err != nil {
		return fmt.Errorf("cancel upload %s: %w", id, err)
	}
	if err := os.RemoveAll(h.sessionDir(id)); err != nil {
		return fmt.Errorf("cancel upload %s: %w", id, err)
	}
	return nil
}

// ExpireUploads removes the upload sessions idle for longer than the upload
// TTL and returns how many it removed. The daemon calls it periodically; a
// session that expired is also refused when a client names it.
func (h *Hosted) ExpireUploads(ctx context.Context) (int, error) {
	entries, err := os.ReadDir(h.uploadDir)
	if err != nil {
		return 0, fmt.Errorf("expire uploads: %w", err)
	}
	var removed int
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if !validSessionID(e.Name()) {
			continue
		}
		if h.expireIfIdle(ctx, e.Name()) {
			removed++
		}
	}
	return removed, nil
}

func (h *Hosted) expireIfIdle(ctx context.Context, id string) bool {
	unlock, err := h.sessions.lock(ctx, id)
	if err != nil {
		return false
	}
	defer unlock()
	fi, err := os.Stat(filepath.Join(h.sessionDir(id), sessionDataFile))
	if err == nil && !h.expired(fi) {
		return false
	}
	// No data file means a session whose start a crash interrupted.
	return os.RemoveAll(h.sessionDir(id)) == nil
}

// openSession checks that session id exists, belongs to repository name and
// has not expired, and returns its size. Called with the session locked.
func (h *Hosted) openSession(name, id string) (int64, error) {
	if !validSessionID(id) {
		return 0, fs.ErrNotExist
	}
	owner, err := os.ReadFile(filepath.Join(h.sessionDir(id), sessionRepoFile))
	if err != nil {
		return 0, err
	}
	if string(owner) != name {
		return 0, fs.ErrNotExist // another repository's session is none of this one's business
	}
	fi, err := os.Stat(filepath.Join(h.sessionDir(id), sessionDataFile))
	if err != nil {
		return 0, err
	}
	if h.expired(fi) {
		os.RemoveAll(h.sessionDir(id))
		return 0, fmt.Errorf("expired: %w", fs.ErrNotExist)
	}
	return fi.Size(), nil
}

func (h *Hosted) expired(fi fs.FileInfo) bool {
	return h.s.now().Sub(fi.ModTime()) > h.uploadTTL
}

// touch records activity on session id.
func (h *Hosted) touch(id string) error {
	now := h.s.now()
	return os.Chtimes(filepath.Join(h.sessionDir(id), sessionDataFile), now, now)
}

func (h *Hosted) sessionDir(id string) string { return filepath.Join(h.uploadDir, id) }

// pin registers d as read, which removal respects, waiting out a removal of
// d in progress.
func (h *Hosted) pin(ctx context.Context, d digest.Digest) (release func(), err error) {
	for {
		removed, ok := h.s.uses.acquire(d)
		if ok {
			return func() { h.s.uses.release(d) }, nil
		}
		select {
		case <-removed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func newSessionID() string {
	b := make([]byte, sessionIDBytes)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// validSessionID accepts only ids StartUpload could have made, so a client
// can never name a path outside the upload directory.
func validSessionID(id string) bool {
	if len(id) != 2*sessionIDBytes {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// hashPath hashes the file at path with alg: an upload is hashed once, at
// commit, with the algorithm of the digest the client commits it by.
func hashPath(ctx context.Context, path string, alg digest.Algorithm) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, d, err := hashFile(ctx, f, alg)
	return d, err
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Sync(), f.Close())
}

// sessionLocks serialises the requests of one upload session, so that two
// chunks never append at once, and the quota checks of one user (see
// userLockKey), so that two uploads cannot both take the last of a quota.
// Entries are dropped when unused.
type sessionLocks struct {
	mu    sync.Mutex
	locks map[string]*sessionLock
}

type sessionLock struct {
	held    chan struct{} // holds a value while locked
	waiters int
}

// lock waits for session id's lock, or for ctx to end.
func (l *sessionLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[string]*sessionLock)
	}
	sl := l.locks[id]
	if sl == nil {
		sl = &sessionLock{held: make(chan struct{}, 1)}
		l.locks[id] = sl
	}
	sl.waiters++
	l.mu.Unlock()

	select {
	case sl.held <- struct{}{}:
		return func() { l.unlock(id, sl) }, nil
	case <-ctx.Done():
		l.drop(id, sl)
		return nil, ctx.Err()
	}
}

func (l *sessionLocks) unlock(id string, sl *sessionLock) {
	<-sl.held
	l.drop(id, sl)
}

func (l *sessionLocks) drop(id string, sl *sessionLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sl.waiters--; sl.waiters == 0 {
		delete(l.locks, id)
	}
}
