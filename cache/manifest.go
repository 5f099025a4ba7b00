package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// Manifest returns a cached manifest's media type and exact bytes, or an
// error wrapping fs.ErrNotExist.
func (s *Store) Manifest(ctx context.Context, d digest.Digest) (mediaType string, data []byte, err error) {
	if err := checkDigest(d); err != nil {
		return "", nil, fmt.Errorf("read manifest: %w", err)
	}
	v, err := readValue(ctx, s.db, manifestKey(d))
	var row manifestRow
	if err == nil {
		row, err = unmarshalManifestRow(v)
	}
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
	d := digest.SHA256.FromBytes(data)
	return d, s.PutManifestAs(ctx, repo, d, mediaType, data)
}

// PutManifestAs stores a manifest under d, which data must hash to by d's
// algorithm (else it fails wrapping ErrDigestMismatch), and records that
// repo uses it. A manifest has one row per digest it was fetched by.
func (s *Store) PutManifestAs(ctx context.Context, repo string, d digest.Digest, mediaType string, data []byte) error {
	if err := checkName("repository", repo); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return fmt.Errorf("put manifest %s: content hashes to %s: %w", d, got, ErrDigestMismatch)
	}
	row := manifestRow{MediaType: mediaType, Created: s.now(), Data: data}
	var added bool
	err := s.db.Update(ctx, func(txn index.Txn) error {
		var err error
		if added, err = setManifestRow(txn, d, row); err != nil {
			return err
		}
		return setReference(txn, repo, d, kindManifest)
	})
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", d, err)
	}
	if added {
		s.chargeManifest(ctx, d)
	}
	return nil
}

// setManifestRow stores the manifest d unless the index has it, and reports
// whether it did.
func setManifestRow(txn index.Txn, d digest.Digest, row manifestRow) (added bool, err error) {
	if found, err := txn.Has(manifestKey(d)); err != nil || found {
		return false, err
	}
	return true, txn.Set(manifestKey(d), row.marshal())
}

// chargeManifest adds what the newly committed manifest d counts to the
// usage. It reads the cost from the stored row, as its removal will, so
// that adding and removing a manifest leave the usage where it was.
func (s *Store) chargeManifest(ctx context.Context, d digest.Digest) {
	var cost int64
	key := manifestKey(d)
	err := s.db.View(context.WithoutCancel(ctx), func(txn index.Reader) error {
		size, err := txn.ValueSize(key)
		if err == nil {
			cost = manifestCost(key, size)
		}
		return err
	})
	if err != nil {
		return // removed meanwhile, and taken out of the usage it never entered
	}
	s.growIndex(cost)
}

// setTagRow points a tag at row.Digest and returns what it added to the
// budget's usage: a new tag counts, moving one does not.
func setTagRow(txn index.Txn, key []byte, row tagRow) (cost int64, err error) {
	found, err := txn.Has(key)
	if err != nil {
		return 0, err
	}
	if !found {
		cost = tagCost
	}
	return cost, txn.Set(key, row.marshal())
}

// Tag returns the digest repo:tag pointed to and when that was last confirmed
// upstream, or an error wrapping fs.ErrNotExist.
func (s *Store) Tag(ctx context.Context, repo, tag string) (d digest.Digest, fetchedAt time.Time, err error) {
	if err := checkTag(repo, tag); err != nil {
		return "", time.Time{}, fmt.Errorf("read tag: %w", err)
	}
	v, err := readValue(ctx, s.db, tagKey(repo, tag))
	var row tagRow
	if err == nil {
		row, err = unmarshalTagRow(v)
	}
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
	var added int64
	err := s.db.Update(ctx, func(txn index.Txn) error {
		var err error
		added, err = setTagRow(txn, tagKey(repo, tag), row)
		return err
	})
	if err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	s.growIndex(added)
	return nil
}

func checkTag(repo, tag string) error {
	if err := checkName("repository", repo); err != nil {
		return err
	}
	return checkName("tag", tag)
}
