package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// Keep marks the blob or manifest d as content that must never be removed by
// eviction or pruning, for instance because a hosted repository owns it;
// reason says why, for the operator. d need not be cached yet: marking
// content before writing it leaves no moment in which it could be evicted.
// Marking twice replaces the reason.
func (s *Store) Keep(ctx context.Context, d digest.Digest, reason string) error {
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	err := s.db.Update(ctx, func(txn index.Txn) error {
		return txn.Set(keepKey(d), []byte(reason))
	})
	if err != nil {
		return fmt.Errorf("keep %s: %w", d, err)
	}
	return nil
}

// Unkeep lifts the mark Keep set on d, making it evictable again. Unmarked
// content is left alone.
func (s *Store) Unkeep(ctx context.Context, d digest.Digest) error {
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("unkeep: %w", err)
	}
	err := s.db.Update(ctx, func(txn index.Txn) error {
		return txn.Delete(keepKey(d))
	})
	if err != nil {
		return fmt.Errorf("unkeep %s: %w", d, err)
	}
	return nil
}

// Kept reports why d is marked by Keep, or an error wrapping fs.ErrNotExist
// when it is not.
func (s *Store) Kept(ctx context.Context, d digest.Digest) (reason string, err error) {
	if err := checkDigest(d); err != nil {
		return "", fmt.Errorf("kept: %w", err)
	}
	v, err := readValue(ctx, s.db, keepKey(d))
	if err != nil {
		return "", fmt.Errorf("kept %s: %w", d, err)
	}
	return string(v), nil
}

// keptSet reads every digest marked by Keep.
func keptSet(ctx context.Context, txn index.Reader) (map[digest.Digest]bool, error) {
	kept := make(map[digest.Digest]bool)
	err := txn.ScanKeys(ctx, []byte(prefixKeep), func(kv index.Row) error {
		kept[digest.Digest(kv.Key[len(prefixKeep):])] = true
		return nil
	})
	return kept, err
}

// isKept checks the mark inside a transaction that is about to remove d.
func isKept(txn index.Reader, d digest.Digest) (bool, error) {
	_, err := getValue(txn, keepKey(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
