package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache/index"
)

// prefixPushedBy charges pushed blobs to the users who pushed them:
// pushed-by/<user>\0<digest> → the blob's size (varint). A user's storage
// is the sum over the rows whose blob is still stored; the rows of blobs
// that are gone are dropped when the user's storage is next counted.
const prefixPushedBy = "pushed-by/"

func pushedByKey(user string, d digest.Digest) []byte {
	return []byte(prefixPushedBy + user + fieldSep + string(d))
}

// ErrQuota means an upload would take a user past one of their caps.
var ErrQuota = errors.New("quota exceeded")

// What a QuotaError is about.
const (
	quotaSessions = "open upload sessions"
	quotaStorage  = "stored bytes of pushed blobs"
)

// QuotaError reports an upload refused because it would take its user past
// a cap. It wraps ErrQuota.
type QuotaError struct {
	User  string
	What  string // quotaSessions or quotaStorage
	Limit int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("user %s: %s: %v", e.User, e.QuotaExceeded(), ErrQuota)
}

func (e *QuotaError) Unwrap() error { return ErrQuota }

// QuotaExceeded says which cap was hit, in words for the client.
func (e *QuotaError) QuotaExceeded() string {
	if e.What == quotaStorage {
		return fmt.Sprintf("your pushed blobs may take at most %s on this mirror; the upload was discarded", humanize.IBytes(uint64(e.Limit)))
	}
	return fmt.Sprintf("you may have at most %d %s; finish or cancel one first", e.Limit, e.What)
}

// userLockKey names user's entry in the session locks; session ids are hex,
// so it never names a session.
func userLockKey(user string) string { return "user/" + user }

// charge is a blob's charge to a user with a storage cap (negative: none).
type charge struct {
	user  string
	limit int64
}

// record charges blob d to the user, in txn.
func (c *charge) record(txn index.Txn, d digest.Digest, size int64) error {
	return txn.Set(pushedByKey(c.user, d), binary.AppendVarint(nil, size))
}

// checkCharge fails with a *QuotaError when charging blob d of size bytes
// would take c's user past their cap. A blob charged to them already costs
// nothing more. Called with the user's lock held.
func (h *Hosted) checkCharge(ctx context.Context, c *charge, d digest.Digest, size int64) error {
	if c == nil || c.limit < 0 {
		return nil
	}
	var used int64
	var charged bool
	err := h.s.db.Update(ctx, func(txn index.Txn) error {
		used, charged = 0, false
		return h.scanCharges(ctx, txn, c.user, func(blob digest.Digest, n int64) {
			used += n
			charged = charged || blob == d
		})
	})
	if err != nil {
		return fmt.Errorf("counting the storage of user %s: %w", c.user, err)
	}
	if !charged && used+size > c.limit {
		return &QuotaError{User: c.user, What: quotaStorage, Limit: c.limit}
	}
	return nil
}

// UserStorage returns the bytes of the stored blobs user pushed.
func (h *Hosted) UserStorage(ctx context.Context, user string) (int64, error) {
	var used int64
	err := h.s.db.Update(ctx, func(txn index.Txn) error {
		used = 0
		return h.scanCharges(ctx, txn, user, func(_ digest.Digest, n int64) { used += n })
	})
	return used, err
}

// scanCharges calls fn with each stored blob or manifest charged to user
// and its size, and drops the charges of content no longer stored.
func (h *Hosted) scanCharges(ctx context.Context, txn index.Txn, user string, fn func(digest.Digest, int64)) error {
	var gone [][]byte
	err := txn.Scan(ctx, []byte(prefixPushedBy+user+fieldSep), func(kv index.Row) error {
		d := digest.Digest(kv.Key[len(prefixPushedBy)+len(user)+len(fieldSep):])
		if _, err := storedKind(txn, d); errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, bytes.Clone(kv.Key))
			return nil
		} else if err != nil {
			return err
		}
		n, k := binary.Varint(kv.Value)
		if k <= 0 {
			return fmt.Errorf("corrupt charge row for %s", d)
		}
		fn(d, n)
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range gone {
		if err := txn.Delete(key); err != nil {
			return err
		}
	}
	return nil
}

// openSessions counts user's upload sessions that have not expired.
func (h *Hosted) openSessions(ctx context.Context, user string) (int, error) {
	entries, err := os.ReadDir(h.uploadDir)
	if err != nil {
		return 0, err
	}
	var open int
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if !validSessionID(e.Name()) {
			continue
		}
		owner, err := os.ReadFile(filepath.Join(h.sessionDir(e.Name()), sessionOwnerFile))
		if err != nil || string(owner) != user {
			continue // finished meanwhile, or someone else's
		}
		fi, err := os.Stat(filepath.Join(h.sessionDir(e.Name()), sessionDataFile))
		if err == nil && !h.expired(fi) {
			open++
		}
	}
	return open, nil
}

// LinkUserBlob is LinkBlob for a mount by user: the blob is charged to
// them, whose stored pushed content may total at most maxStorage bytes
// (negative: no cap). Past it, it links nothing and fails with a
// *QuotaError: a mount keeps a blob as surely as an upload does.
func (h *Hosted) LinkUserBlob(ctx context.Context, name, user string, d digest.Digest, maxStorage int64) (int64, error) {
	if err := checkHosted(name, d); err != nil {
		return 0, fmt.Errorf("link blob: %w", err)
	}
	unlock, err := h.sessions.lock(ctx, userLockKey(user))
	if err != nil {
		return 0, err
	}
	defer unlock()
	var size int64
	err = h.s.db.View(ctx, func(txn index.Reader) error {
		row, err := readBlobRow(txn, d)
		size = row.Size
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	c := &charge{user: user, limit: maxStorage}
	if err := h.checkCharge(ctx, c, d, size); err != nil {
		return 0, fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	err = h.s.db.Update(ctx, func(txn index.Txn) error {
		if _, err := readBlobRow(txn, d); err != nil {
			return err
		}
		if err := c.record(txn, d, size); err != nil {
			return err
		}
		return link(txn, name, d, kindBlob)
	})
	if err != nil {
		return 0, fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	return size, nil
}

// PutUserManifest is PutManifest for a push by user: the manifest is
// charged to them, whose stored pushed content may total at most
// maxStorage bytes (negative: no cap). Past it, it stores nothing and fails
// with a *QuotaError.
func (h *Hosted) PutUserManifest(ctx context.Context, name, user string, maxStorage int64, desc ocispec.Descriptor,
	data []byte, refs []digest.Digest, subject digest.Digest, tags []string) error {
	unlock, err := h.sessions.lock(ctx, userLockKey(user))
	if err != nil {
		return err
	}
	defer unlock()
	c := &charge{user: user, limit: maxStorage}
	if err := h.checkCharge(ctx, c, desc.Digest, int64(len(data))); err != nil {
		return fmt.Errorf("put hosted manifest %s in %s: %w", desc.Digest, name, err)
	}
	return h.putManifest(ctx, name, desc, data, refs, subject, tags, c)
}
