package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/cache/index"
)

// Hosted repositories share the store's blob tree and index with the cached
// content, so a layer pushed here and pulled through the mirror is stored
// once. Their repository keys live in a namespace of their own: proxied
// repositories are keyed "<host>/<path>", and a registry host always
// contains a dot or a colon or is "localhost", so "hosted/<name>" can never
// name one.
const hostedPrefix = "hosted/"

// keepReasonHosted is the Keep reason of content that a hosted repository
// holds. Eviction never removes kept content.
const keepReasonHosted = "hosted"

// prefixReferrer indexes the referrers API:
// referrer/<repo>\0<subject>\0<referrer> → referrerRow.
const prefixReferrer = "referrer/"

func hostedKey(name string) string { return hostedPrefix + name }

func referrerKey(repo string, subject, referrer digest.Digest) []byte {
	return []byte(prefixReferrer + repo + fieldSep + string(subject) + fieldSep + string(referrer))
}

// ErrUploadOffset means a chunk does not start where the upload ends.
var ErrUploadOffset = errors.New("chunk does not continue the upload")

// OffsetError reports a chunk that does not start where its upload ends.
// It wraps ErrUploadOffset.
type OffsetError struct {
	Offset, Size int64
}

func (e *OffsetError) Error() string {
	return fmt.Sprintf("chunk at %d, upload has %d bytes: %v", e.Offset, e.Size, ErrUploadOffset)
}

func (e *OffsetError) Unwrap() error { return ErrUploadOffset }

// UploadSize is the size of the upload, where the chunk should have started.
func (e *OffsetError) UploadSize() int64 { return e.Size }

// DigestError reports content that does not hash to the digest it was sent
// under. It wraps ErrDigestMismatch.
type DigestError struct {
	Want, Got digest.Digest
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("content hashes to %s, not %s: %v", e.Got, e.Want, ErrDigestMismatch)
}

func (e *DigestError) Unwrap() error { return ErrDigestMismatch }

// ContentDigest is the digest the content really has.
func (e *DigestError) ContentDigest() digest.Digest { return e.Got }

// MissingContentError reports content a manifest refers to that the store
// does not have. It wraps fs.ErrNotExist.
type MissingContentError struct {
	Digest digest.Digest
}

func (e *MissingContentError) Error() string {
	return fmt.Sprintf("referenced content %s is not stored", e.Digest)
}

func (e *MissingContentError) Unwrap() error { return fs.ErrNotExist }

// MissingDigest is the digest of the missing content.
func (e *MissingContentError) MissingDigest() digest.Digest { return e.Digest }

// HostedOptions configure Hosted. The zero value means the defaults.
type HostedOptions struct {
	// UploadTTL is how long an upload session may go without a chunk before
	// it expires. Default: DefaultUploadTTL.
	UploadTTL time.Duration
}

// DefaultUploadTTL is how long an idle upload session lives by default:
// long enough for a client to resume after a restart of either side, short
// enough that abandoned sessions do not hold disk or a user's session quota.
const DefaultUploadTTL = time.Hour

// Hosted is the store of the repositories clients push to. Names are
// repository names as the mirror resolves them, e.g. "team/app". Content
// linked into a hosted repository is marked with Keep, so eviction never
// removes it; unlinking the last hosted repository lifts the mark, and
// content no repository uses any more is deleted.
//
// Methods fail with an error wrapping fs.ErrNotExist when the repository
// does not hold what they are asked for. Hosted is safe for concurrent use.
type Hosted struct {
	s         *Store
	uploadDir string
	uploadTTL time.Duration
	sessions  sessionLocks
}

// Hosted returns the hosted repositories of the store, with upload sessions
// kept in the data directory so that they survive a restart.
func (s *Store) Hosted(opts HostedOptions) (*Hosted, error) {
	h := &Hosted{
		s:         s,
		uploadDir: filepath.Join(filepath.Dir(s.blobRoot), "uploads"),
		uploadTTL: opts.UploadTTL,
	}
	if h.uploadTTL <= 0 {
		h.uploadTTL = DefaultUploadTTL
	}
	if err := makePrivateDir(h.uploadDir); err != nil {
		return nil, fmt.Errorf("hosted: %w", err)
	}
	return h, nil
}

// StatBlob returns the size of blob d of repository name.
func (h *Hosted) StatBlob(ctx context.Context, name string, d digest.Digest) (int64, error) {
	if err := checkHosted(name, d); err != nil {
		return 0, fmt.Errorf("stat hosted blob: %w", err)
	}
	var size int64
	err := h.s.db.View(ctx, func(txn index.Reader) error {
		if err := requireLink(txn, name, d, kindBlob); err != nil {
			return err
		}
		row, err := readBlobRow(txn, d)
		size = row.Size
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("stat hosted blob %s in %s: %w", d, name, err)
	}
	return size, nil
}

// OpenBlob opens blob d of repository name for reading from offset and
// returns its total size.
func (h *Hosted) OpenBlob(ctx context.Context, name string, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if _, err := h.StatBlob(ctx, name, d); err != nil {
		return nil, 0, err
	}
	return h.s.ReadBlob(ctx, d, offset)
}

// LinkBlob adds the stored blob d to repository name, as a cross-repository
// mount does, and returns its size. It fails with fs.ErrNotExist when the
// store does not have d.
func (h *Hosted) LinkBlob(ctx context.Context, name string, d digest.Digest) (int64, error) {
	if err := checkHosted(name, d); err != nil {
		return 0, fmt.Errorf("link blob: %w", err)
	}
	var size int64
	err := h.s.db.Update(ctx, func(txn index.Txn) error {
		row, err := readBlobRow(txn, d)
		if err != nil {
			return err
		}
		size = row.Size
		return link(txn, name, d, kindBlob)
	})
	if err != nil {
		return 0, fmt.Errorf("link blob %s into %s: %w", d, name, err)
	}
	return size, nil
}

// UnlinkBlob removes blob d from repository name. The blob leaves the store
// once no repository, hosted or cached, uses it.
func (h *Hosted) UnlinkBlob(ctx context.Context, name string, d digest.Digest) error {
	if err := checkHosted(name, d); err != nil {
		return fmt.Errorf("unlink blob: %w", err)
	}
	orphan, err := h.unlink(ctx, name, d, kindBlob, nil)
	if err != nil {
		return fmt.Errorf("unlink blob %s from %s: %w", d, name, err)
	}
	if orphan {
		if _, err := h.s.RemoveBlobs(ctx, []digest.Digest{d}, nil); err != nil {
			return fmt.Errorf("unlink blob %s from %s: %w", d, name, err)
		}
	}
	return nil
}

// PutManifest stores the manifest data, described by desc, in repository
// name, all in one transaction: it checks that the repository holds refs
// (the blobs and manifests the manifest names, pushed or mounted into it),
// lists the manifest among subject's referrers when subject is set, and
// points tags at it. desc's digest must be data's sha256; desc, with its
// artifact type and annotations, is what the referrers API lists. It fails
// with a *MissingContentError when the repository lacks one of refs.
func (h *Hosted) PutManifest(ctx context.Context, name string, desc ocispec.Descriptor, data []byte,
	refs []digest.Digest, subject digest.Digest, tags []string) error {
	return h.putManifest(ctx, name, desc, data, refs, subject, tags, nil)
}

// putManifest is PutManifest that charges the manifest to c's user, when c
// is set, in the same transaction.
func (h *Hosted) putManifest(ctx context.Context, name string, desc ocispec.Descriptor, data []byte,
	refs []digest.Digest, subject digest.Digest, tags []string, c *charge) error {
	if err := checkManifest(name, desc.Digest, data, refs, subject, tags); err != nil {
		return fmt.Errorf("put hosted manifest: %w", err)
	}
	referrer, err := marshalReferrer(desc)
	if err != nil {
		return fmt.Errorf("put hosted manifest %s: %w", desc.Digest, err)
	}
	d := desc.Digest
	now := h.s.now()
	var added bool
	var tagged int64
	err = h.s.db.Update(ctx, func(txn index.Txn) error {
		if err := requireReferences(txn, name, refs); err != nil {
			return err
		}
		var err error
		row := manifestRow{MediaType: desc.MediaType, Created: now, Data: data}
		if added, err = setManifestRow(txn, d, row); err != nil {
			return err
		}
		if c != nil {
			if err := c.record(txn, d, int64(len(data))); err != nil {
				return err
			}
		}
		tagged = 0
		if err := link(txn, name, d, kindManifest); err != nil {
			return err
		}
		if subject != "" {
			if err := txn.Set(referrerKey(hostedKey(name), subject, d), referrer); err != nil {
				return err
			}
		}
		for _, tag := range tags {
			cost, err := setTagRow(txn, tagKey(hostedKey(name), tag), tagRow{Digest: d, FetchedAt: now})
			if err != nil {
				return err
			}
			tagged += cost
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put hosted manifest %s in %s: %w", d, name, err)
	}
	if added {
		h.s.chargeManifest(ctx, d)
	}
	h.s.growIndex(tagged)
	return nil
}

func checkManifest(name string, d digest.Digest, data []byte, refs []digest.Digest, subject digest.Digest, tags []string) error {
	if err := checkHosted(name, d); err != nil {
		return err
	}
	if got := d.Algorithm().FromBytes(data); got != d { // d passed checkDigest
		return &DigestError{Want: d, Got: got}
	}
	for _, ref := range refs {
		if err := checkDigest(ref); err != nil {
			return err
		}
	}
	if subject != "" {
		if err := checkDigest(subject); err != nil {
			return err
		}
	}
	for _, tag := range tags {
		if err := checkName("tag", tag); err != nil {
			return err
		}
	}
	return nil
}

// requireReferences checks that the repository holds every one of refs,
// or fails with a *MissingContentError.
func requireReferences(txn index.Reader, name string, refs []digest.Digest) error {
	for _, d := range refs {
		found, err := txn.Has(repoRefKey(hostedKey(name), d))
		if err != nil {
			return err
		}
		if !found {
			return &MissingContentError{Digest: d}
		}
	}
	return nil
}

// storedKind says whether the store has d as a manifest or as a blob.
func storedKind(txn index.Reader, d digest.Digest) (contentKind, error) {
	for _, kind := range []contentKind{kindManifest, kindBlob} {
		found, err := txn.Has(contentKey(kind, d))
		if err != nil {
			return 0, err
		}
		if found {
			return kind, nil
		}
	}
	return 0, fs.ErrNotExist
}

// Manifest returns the media type and bytes of manifest d of repository name.
func (h *Hosted) Manifest(ctx context.Context, name string, d digest.Digest) (mediaType string, data []byte, err error) {
	if err := checkHosted(name, d); err != nil {
		return "", nil, fmt.Errorf("read hosted manifest: %w", err)
	}
	var row manifestRow
	err = h.s.db.View(ctx, func(txn index.Reader) error {
		if err := requireLink(txn, name, d, kindManifest); err != nil {
			return err
		}
		v, err := getValue(txn, manifestKey(d))
		if err != nil {
			return err
		}
		row, err = unmarshalManifestRow(v)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("read hosted manifest %s in %s: %w", d, name, err)
	}
	return row.MediaType, row.Data, nil
}

// DeleteManifest removes manifest d from repository name, with the tags
// there that point to it and its entries in the referrers API. The manifest
// leaves the store once no repository uses it.
func (h *Hosted) DeleteManifest(ctx context.Context, name string, d digest.Digest) error {
	if err := checkHosted(name, d); err != nil {
		return fmt.Errorf("delete hosted manifest: %w", err)
	}
	var untagged int
	orphan, err := h.unlink(ctx, name, d, kindManifest, func(txn index.Txn) error {
		var err error
		if untagged, err = deleteHostedTagsTo(ctx, txn, name, d); err != nil {
			return err
		}
		return deleteReferrerRows(ctx, txn, name, d)
	})
	if err != nil {
		return fmt.Errorf("delete hosted manifest %s from %s: %w", d, name, err)
	}
	h.s.growIndex(-int64(untagged) * tagCost)
	if orphan {
		if _, err := h.s.RemoveManifests(ctx, []digest.Digest{d}, nil); err != nil {
			return fmt.Errorf("delete hosted manifest %s from %s: %w", d, name, err)
		}
	}
	return nil
}

// Tag returns the digest tag points to in repository name.
func (h *Hosted) Tag(ctx context.Context, name, tag string) (digest.Digest, error) {
	if err := checkTag(hostedKey(name), tag); err != nil {
		return "", fmt.Errorf("read hosted tag: %w", err)
	}
	v, err := readValue(ctx, h.s.db, tagKey(hostedKey(name), tag))
	var row tagRow
	if err == nil {
		row, err = unmarshalTagRow(v)
	}
	if err != nil {
		return "", fmt.Errorf("read hosted tag %s:%s: %w", name, tag, err)
	}
	return row.Digest, nil
}

// Tags returns the tags of repository name in lexical order.
func (h *Hosted) Tags(ctx context.Context, name string) ([]string, error) {
	if err := checkName("repository", name); err != nil {
		return nil, fmt.Errorf("list hosted tags: %w", err)
	}
	prefix := string(tagKey(hostedKey(name), ""))
	var tags []string
	err := h.s.db.View(ctx, func(txn index.Reader) error {
		return txn.ScanKeys(ctx, []byte(prefix), func(kv index.Row) error {
			tags = append(tags, string(kv.Key[len(prefix):]))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list hosted tags of %s: %w", name, err)
	}
	return tags, nil
}

// DeleteTag removes tag from repository name; the manifest stays.
func (h *Hosted) DeleteTag(ctx context.Context, name, tag string) error {
	if err := checkTag(hostedKey(name), tag); err != nil {
		return fmt.Errorf("delete hosted tag: %w", err)
	}
	err := h.s.db.Update(ctx, func(txn index.Txn) error {
		if _, err := getValue(txn, tagKey(hostedKey(name), tag)); err != nil {
			return err
		}
		return txn.Delete(tagKey(hostedKey(name), tag))
	})
	if err != nil {
		return fmt.Errorf("delete hosted tag %s:%s: %w", name, tag, err)
	}
	h.s.growIndex(-tagCost)
	return nil
}

// Referrers returns the descriptors of the manifests in repository name
// whose subject is d; none is not an error.
func (h *Hosted) Referrers(ctx context.Context, name string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	if err := checkHosted(name, subject); err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	prefix := prefixReferrer + hostedKey(name) + fieldSep + string(subject) + fieldSep
	var descs []ocispec.Descriptor
	err := h.s.db.View(ctx, func(txn index.Reader) error {
		return txn.Scan(ctx, []byte(prefix), func(kv index.Row) error {
			desc, err := unmarshalReferrer(kv.Value)
			descs = append(descs, desc)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s in %s: %w", subject, name, err)
	}
	return descs, nil
}

// HasRepository reports whether repository name holds any content.
func (h *Hosted) HasRepository(ctx context.Context, name string) (bool, error) {
	if err := checkName("repository", name); err != nil {
		return false, fmt.Errorf("hosted repository: %w", err)
	}
	var found bool
	err := h.s.db.View(ctx, func(txn index.Reader) error {
		var err error
		found, err = hasPrefix(ctx, txn, prefixRepoRef+hostedKey(name)+fieldSep)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("hosted repository %s: %w", name, err)
	}
	return found, nil
}

// Repositories returns the names of the hosted repositories that hold
// content, in lexical order.
func (h *Hosted) Repositories(ctx context.Context) ([]string, error) {
	prefix := prefixRepoRef + hostedPrefix
	var names []string
	err := h.s.db.View(ctx, func(txn index.Reader) error {
		return txn.ScanKeys(ctx, []byte(prefix), func(kv index.Row) error {
			name, _, _ := strings.Cut(string(kv.Key[len(prefix):]), fieldSep)
			if len(names) == 0 || names[len(names)-1] != name {
				names = append(names, name)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list hosted repositories: %w", err)
	}
	return names, nil
}

// IsHosted reports whether a hosted repository holds the blob or manifest d.
func (h *Hosted) IsHosted(ctx context.Context, d digest.Digest) (bool, error) {
	var u usage
	err := h.s.db.View(ctx, func(txn index.Reader) error {
		var err error
		u, err = usageOf(ctx, txn, d)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("is %s hosted: %w", d, err)
	}
	return u.hosted, nil
}

// link records that hosted repository name holds d and marks d kept.
func link(txn index.Txn, name string, d digest.Digest, kind contentKind) error {
	if err := setReference(txn, hostedKey(name), d, kind); err != nil {
		return err
	}
	if kept, err := txn.Has(keepKey(d)); err != nil || kept {
		return err // kept already, maybe for another reason, which stays
	}
	return txn.Set(keepKey(d), []byte(keepReasonHosted))
}

// unlink removes d from repository name, running also in the same
// transaction, lifts the hosted Keep mark when no hosted repository holds d
// any more, and reports whether no repository at all uses d.
func (h *Hosted) unlink(ctx context.Context, name string, d digest.Digest, kind contentKind, also func(index.Txn) error) (orphan bool, err error) {
	err = h.s.db.Update(ctx, func(txn index.Txn) error {
		if err := requireLink(txn, name, d, kind); err != nil {
			return err
		}
		if err := txn.Delete(repoRefKey(hostedKey(name), d)); err != nil {
			return err
		}
		if err := txn.Delete(usedByKey(d, hostedKey(name))); err != nil {
			return err
		}
		if also != nil {
			if err := also(txn); err != nil {
				return err
			}
		}
		u, err := usageOf(ctx, txn, d)
		if err != nil {
			return err
		}
		if !u.hosted {
			if err := unkeepHosted(txn, d); err != nil {
				return err
			}
		}
		orphan = !u.hosted && !u.cached
		return nil
	})
	return orphan, err
}

// unkeepHosted lifts d's Keep mark if a hosted repository set it.
func unkeepHosted(txn index.Txn, d digest.Digest) error {
	v, err := getValue(txn, keepKey(d))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && string(v) != keepReasonHosted) {
		return nil
	}
	if err != nil {
		return err
	}
	return txn.Delete(keepKey(d))
}

// usage says which kinds of repository use a digest.
type usage struct{ hosted, cached bool }

func usageOf(ctx context.Context, txn index.Reader, d digest.Digest) (usage, error) {
	prefix := prefixUsedBy + string(d) + fieldSep
	var u usage
	err := txn.ScanKeys(ctx, []byte(prefix), func(kv index.Row) error {
		if strings.HasPrefix(string(kv.Key[len(prefix):]), hostedPrefix) {
			u.hosted = true
		} else {
			u.cached = true
		}
		return nil
	})
	return u, err
}

// requireLink checks that repository name holds d and that the store has
// d as the kind of content asked for. One digest may be stored both as a
// blob and as a manifest, but links only once.
func requireLink(txn index.Reader, name string, d digest.Digest, kind contentKind) error {
	if _, err := getValue(txn, repoRefKey(hostedKey(name), d)); err != nil {
		return err
	}
	_, err := getValue(txn, contentKey(kind, d))
	return err
}

func readBlobRow(txn index.Reader, d digest.Digest) (blobRow, error) {
	v, err := getValue(txn, blobKey(d))
	if err != nil {
		return blobRow{}, err
	}
	return unmarshalBlobRow(v)
}

// deleteHostedTagsTo deletes the tags of repository name that point to d
// and returns how many it deleted.
func deleteHostedTagsTo(ctx context.Context, txn index.Txn, name string, d digest.Digest) (int, error) {
	var doomed [][]byte
	err := txn.Scan(ctx, tagKey(hostedKey(name), ""), func(kv index.Row) error {
		if row, err := unmarshalTagRow(kv.Value); err == nil && row.Digest == d {
			doomed = append(doomed, bytes.Clone(kv.Key))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(doomed), deleteKeys(txn, doomed)
}

// deleteReferrerRows deletes the referrers entries of repository name that
// list the manifest d.
func deleteReferrerRows(ctx context.Context, txn index.Txn, name string, d digest.Digest) error {
	suffix := fieldSep + string(d)
	var doomed [][]byte
	err := txn.ScanKeys(ctx, []byte(prefixReferrer+hostedKey(name)+fieldSep), func(kv index.Row) error {
		if strings.HasSuffix(string(kv.Key), suffix) {
			doomed = append(doomed, bytes.Clone(kv.Key))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return deleteKeys(txn, doomed)
}

// deleteKeys deletes the keys a scan collected.
func deleteKeys(txn index.Txn, keys [][]byte) error {
	for _, key := range keys {
		if err := txn.Delete(key); err != nil {
			return err
		}
	}
	return nil
}

// hasPrefix reports whether any key starts with prefix.
func hasPrefix(ctx context.Context, txn index.Reader, prefix string) (bool, error) {
	err := txn.ScanKeys(ctx, []byte(prefix), func(index.Row) error { return errFound })
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// errFound stops a scan at the first row it meets.
var errFound = errors.New("found")

func checkHosted(name string, d digest.Digest) error {
	if err := checkName("repository", name); err != nil {
		return err
	}
	return checkDigest(d)
}

// A referrer row is a version byte and the descriptor as JSON: its
// annotations are an open-ended map.
func marshalReferrer(desc ocispec.Descriptor) ([]byte, error) {
	b, err := json.Marshal(desc)
	if err != nil {
		return nil, err
	}
	return appendBytes([]byte{rowVersion}, b), nil
}

func unmarshalReferrer(v []byte) (ocispec.Descriptor, error) {
	dec := newRowDecoder(v)
	b := dec.bytes()
	if err := dec.finish("referrer"); err != nil {
		return ocispec.Descriptor{}, err
	}
	var desc ocispec.Descriptor
	if err := json.Unmarshal(b, &desc); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("decode referrer row: %w", err)
	}
	return desc, nil
}
