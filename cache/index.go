package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/cache/index"
)

// Index key prefixes. A key is a prefix followed by fields separated by NUL
// (digests, repositories and tags never contain one), so every row of one
// repository or one digest can be found with a prefix scan.
const (
	prefixBlob     = "blob/"     // blob/<digest> → blobRow
	prefixManifest = "manifest/" // manifest/<digest> → manifestRow
	prefixTag      = "tag/"      // tag/<repo>\0<tag> → tagRow
	prefixRepoRef  = "repo-ref/" // repo-ref/<repo>\0<digest> → contentKind
	prefixUsedBy   = "used-by/"  // used-by/<digest>\0<repo> → contentKind
	prefixKeep     = "keep/"     // keep/<digest> → why the content must never be removed
	// manifest-access/<digest> → last access time of a manifest, apart from
	// the manifest's row so that a read does not rewrite the manifest.
	prefixManifestAccess = "manifest-access/"
)

// contentKind tells a reference row whether its digest names a blob or a manifest.
type contentKind byte

const (
	kindBlob     contentKind = 'b'
	kindManifest contentKind = 'm'
)

const fieldSep = "\x00"

func blobKey(d digest.Digest) []byte     { return []byte(prefixBlob + string(d)) }
func manifestKey(d digest.Digest) []byte { return []byte(prefixManifest + string(d)) }
func tagKey(repo, tag string) []byte     { return []byte(prefixTag + repo + fieldSep + tag) }
func keepKey(d digest.Digest) []byte     { return []byte(prefixKeep + string(d)) }

func manifestAccessKey(d digest.Digest) []byte { return []byte(prefixManifestAccess + string(d)) }

func repoRefKey(repo string, d digest.Digest) []byte {
	return []byte(prefixRepoRef + repo + fieldSep + string(d))
}

func usedByKey(d digest.Digest, repo string) []byte {
	return []byte(prefixUsedBy + string(d) + fieldSep + repo)
}

// contentKey is the row that must exist for a reference to d to make sense.
func contentKey(kind contentKind, d digest.Digest) []byte {
	if kind == kindManifest {
		return manifestKey(d)
	}
	return blobKey(d)
}

// setReference records, in both directions, that repo uses d.
func setReference(txn index.Txn, repo string, d digest.Digest, kind contentKind) error {
	v := []byte{byte(kind)}
	if err := txn.Set(repoRefKey(repo, d), v); err != nil {
		return err
	}
	return txn.Set(usedByKey(d, repo), v)
}

// getValue returns a copy of key's value, or an error wrapping fs.ErrNotExist.
func getValue(txn index.Reader, key []byte) ([]byte, error) {
	v, err := txn.Get(key)
	if errors.Is(err, index.ErrNotFound) {
		return nil, fs.ErrNotExist
	}
	return v, err
}

// readValue is getValue in a snapshot of its own, for a lookup of one row.
func readValue(ctx context.Context, db index.DB, key []byte) ([]byte, error) {
	v, err := db.Get(ctx, key)
	if errors.Is(err, index.ErrNotFound) {
		return nil, fs.ErrNotExist
	}
	return v, err
}

// Rows are encoded as a version byte followed by varint and length-prefixed
// fields, so that fields can be appended later without a migration.
const rowVersion = 1

// blobRow describes one blob file.
type blobRow struct {
	Size       int64
	Created    time.Time
	LastAccess time.Time
}

func (r blobRow) marshal() []byte {
	b := []byte{rowVersion}
	b = binary.AppendVarint(b, r.Size)
	b = appendTime(b, r.Created)
	return appendTime(b, r.LastAccess)
}

func unmarshalBlobRow(b []byte) (blobRow, error) {
	dec := newRowDecoder(b)
	r := blobRow{Size: dec.varint(), Created: dec.time(), LastAccess: dec.time()}
	return r, dec.finish("blob")
}

// manifestRow is a manifest with its exact bytes.
type manifestRow struct {
	MediaType string
	Created   time.Time
	Data      []byte
}

func (r manifestRow) marshal() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(r.MediaType)+len(r.Data))
	b = append(b, rowVersion)
	b = appendTime(b, r.Created)
	b = appendBytes(b, []byte(r.MediaType))
	return appendBytes(b, r.Data)
}

func unmarshalManifestRow(b []byte) (manifestRow, error) {
	dec := newRowDecoder(b)
	r := manifestRow{Created: dec.time(), MediaType: string(dec.bytes()), Data: dec.bytes()}
	return r, dec.finish("manifest")
}

// tagRow is where a tag pointed when upstream was last asked.
type tagRow struct {
	Digest    digest.Digest
	FetchedAt time.Time
}

func (r tagRow) marshal() []byte {
	b := []byte{rowVersion}
	b = appendTime(b, r.FetchedAt)
	return appendBytes(b, []byte(r.Digest))
}

func unmarshalTagRow(b []byte) (tagRow, error) {
	dec := newRowDecoder(b)
	r := tagRow{FetchedAt: dec.time(), Digest: digest.Digest(dec.bytes())}
	return r, dec.finish("tag")
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendBytes(b, field []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(field)))
	return append(b, field...)
}

// rowDecoder reads the fields of a row in order; the first error sticks and
// is reported by finish, which keeps the unmarshal functions linear.
type rowDecoder struct {
	b   []byte
	err error
}

func newRowDecoder(b []byte) *rowDecoder {
	if len(b) == 0 || b[0] != rowVersion {
		return &rowDecoder{err: errors.New("unknown row version")}
	}
	return &rowDecoder{b: b[1:]}
}

func (d *rowDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *rowDecoder) time() time.Time {
	ns := d.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (d *rowDecoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, w := binary.Uvarint(d.b)
	if w <= 0 || n > uint64(len(d.b)-w) {
		d.err = errors.New("truncated field")
		return nil
	}
	field := d.b[w : w+int(n)]
	d.b = d.b[w+int(n):]
	return field
}

func (d *rowDecoder) finish(row string) error {
	if d.err != nil {
		return fmt.Errorf("decode %s row: %w", row, d.err)
	}
	return nil
}
