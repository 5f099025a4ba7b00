package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// Manifest returns a cached manifest's media type and exact bytes, or an
// error wrapping fs.ErrNotExist.
func (s *Store) Manifest(ctx context.Context, d digest.Digest) (mediaType string, data []byte, err error) {
	if err := checkDigest(d); err != nil {
		return "", nil, fmt.Errorf("read manifest: %w", err)
	}
	var row manifestRow
	err = s.view(ctx, func(txn *badger.Txn) error {
		v, err := getValue(txn, manifestKey(d))
		if err != nil {
			return err
		}
		row, err = unmarshalManifestRow(v)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("read manifest %s: %w", d, err)
	}
	if !s.skipAccess {
		s.access.touchManifest(d, s.now())
	}
	return row.MediaType, row.Data, nil
}

// PutManifest stores a manifest under the sha256 of data, which it returns,
// and records that repo uses it.
func (s *Store) PutManifest(ctx context.Context, repo, mediaType string, data []byte) (digest.Digest, error) {
	if err := checkName("repository", repo); err != nil {
		return "", fmt.Errorf("put manifest: %w", err)
	}
	d := digest.SHA256.FromBytes(data)
	row := manifestRow{MediaType: mediaType, Created: s.now(), Data: data}
	err := s.update(ctx, func(txn *badger.Txn) error {
		_, err := txn.Get(manifestKey(d))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			if err := txn.Set(manifestKey(d), row.marshal()); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		return setReference(txn, repo, d, kindManifest)
	})
	if err != nil {
		return "", fmt.Errorf("put manifest %s: %w", d, err)
	}
	return d, nil
}

// Tag returns the digest repo:tag pointed to and when that was last confirmed
// upstream, or an error wrapping fs.ErrNotExist.
func (s *Store) Tag(ctx context.Context, repo, tag string) (d digest.Digest, fetchedAt time.Time, err error) {
	if err := checkTag(repo, tag); err != nil {
		return "", time.Time{}, fmt.Errorf("read tag: %w", err)
	}
	var row tagRow
	err = s.view(ctx, func(txn *badger.Txn) error {
		v, err := getValue(txn, tagKey(repo, tag))
		if err != nil {
			return err
		}
		row, err = unmarshalTagRow(v)
		return err
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read tag %s:%s: %w", repo, tag, err)
	}
	return row.Digest, row.FetchedAt, nil
}

// PutTag records that repo:tag points to d, confirmed at fetchedAt.
func (s *Store) PutTag(ctx context.Context, repo, tag string, d digest.Digest, fetchedAt time.Time) error {
	if err := checkTag(repo, tag); err != nil {
		return fmt.Errorf("put tag: %w", err)
	}
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	row := tagRow{Digest: d, FetchedAt: fetchedAt}
	err := s.update(ctx, func(txn *badger.Txn) error {
		return txn.Set(tagKey(repo, tag), row.marshal())
	})
	if err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	return nil
}

func checkTag(repo, tag string) error {
	if err := checkName("repository", repo); err != nil {
		return err
	}
	return checkName("tag", tag)
}
