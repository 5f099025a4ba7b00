package s3janitor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
)

// accessVersion is the version of the access records this package writes
// and reads; a record of another version is ignored.
const accessVersion = 1

// accessRecord is the body of one replica's access object.
type accessRecord struct {
	Version int    `json:"version"`
	Replica string `json:"replica"`
	// Written is when the record was written, by the replica's clock:
	// against the object's LastModified, by the server's, it tells how
	// far the two clocks are apart.
	Written time.Time `json:"written"`
	// Access maps each blob to when the replica last served or filled
	// it, in Unix seconds by its clock.
	Access map[digest.Digest]int64 `json:"access"`
}

// accessDir is where the access objects are, under the store's prefix.
func (j *Janitor) accessDir() string { return j.blobs.Prefix() + "access/" }

// maxKeyNameLen bounds the replica's part of its access object's key.
const maxKeyNameLen = 64

// accessKey is the key of the access object of replica: its ID with what
// is not safe in a key replaced, and a hash of the ID when anything was
// replaced or cut, so that two IDs never share an object.
func accessKey(dir, replica string) string {
	safe := strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, replica)
	if safe != replica || len(safe) > maxKeyNameLen || strings.HasPrefix(safe, ".") {
		sum := sha256.Sum256([]byte(replica))
		safe = safe[:min(len(safe), maxKeyNameLen)] + "-" + hex.EncodeToString(sum[:4])
	}
	return dir + safe + ".json"
}

// Touch records that this replica served or filled d now. It never
// blocks on the bucket: the access is written with the next flush. While
// MaxPending accesses wait for a flush, accesses of other blobs are
// dropped (counted in Stats.DroppedTouches) and the flush is hurried.
func (j *Janitor) Touch(d digest.Digest) {
	if d.Validate() != nil {
		return
	}
	now := j.now().Unix()
	j.touchMu.Lock()
	defer j.touchMu.Unlock()
	if prev, ok := j.pending[d]; ok {
		j.pending[d] = max(prev, now)
		return
	}
	if len(j.pending) >= j.opts.MaxPending {
		j.droppedTouches++
		select {
		case j.flushNow <- struct{}{}:
		default:
		}
		return
	}
	j.pending[d] = now
}

// takePending returns the accesses waiting for a flush and starts a new
// batch.
func (j *Janitor) takePending() (map[digest.Digest]int64, int64) {
	j.touchMu.Lock()
	defer j.touchMu.Unlock()
	batch, dropped := j.pending, j.droppedTouches
	j.pending, j.droppedTouches = make(map[digest.Digest]int64), 0
	return batch, dropped
}

// Flush writes the accesses recorded since the last flush into this
// replica's access object, merged with those it holds already; with none
// to write, it writes nothing. When the bucket cannot be reached, they
// wait for the next flush.
func (j *Janitor) Flush(ctx context.Context) error {
	j.flushMu.Lock()
	defer j.flushMu.Unlock()
	if err := j.loadOwn(ctx); err != nil {
		return err
	}
	batch, dropped := j.takePending()
	j.dropped += dropped
	for d, t := range batch {
		j.own[d] = max(j.own[d], t)
	}
	if len(batch) > 0 {
		j.ownChanged = true
	}
	if !j.ownChanged {
		return nil // an idle replica writes nothing
	}
	j.trimOwn()
	if err := j.writeOwn(ctx); err != nil {
		return err
	}
	j.ownChanged = false
	return nil
}

// loadOwn reads this replica's access object once, so that a restarted
// replica keeps what it recorded before. A missing object is an empty
// one; one that is not a record is replaced, with a warning.
func (j *Janitor) loadOwn(ctx context.Context) error {
	if j.own != nil {
		return nil
	}
	rec, err := j.readRecord(ctx, j.ownKey, j.opts.MaxAccessObjectSize)
	switch {
	case isNotFound(err):
		j.own = make(map[digest.Digest]int64)
		return nil
	case errors.Is(err, errNotARecord):
		j.log.Warn("s3janitor: this replica's access object is not an access record; replacing it",
			"object", j.location(j.ownKey), "err", err)
		j.own, j.ownChanged = make(map[digest.Digest]int64), true
		return nil
	case err != nil:
		return fmt.Errorf("s3janitor: read %s: %w", j.location(j.ownKey), err)
	}
	j.own = make(map[digest.Digest]int64, len(rec.Access))
	for d, t := range rec.Access {
		if d.Validate() == nil && t > 0 {
			j.own[d] = t
		}
	}
	return nil
}

// trimOwn keeps the MaxEntries most recent accesses, so that the object
// stays small however many blobs the replica has served over time. A blob
// whose access is dropped falls back on the other replicas' records and
// its own upload time: it may go sooner, never later.
func (j *Janitor) trimOwn() {
	over := len(j.own) - j.opts.MaxEntries
	if over <= 0 {
		return
	}
	byAge := slices.SortedFunc(maps.Keys(j.own), func(a, b digest.Digest) int {
		return cmp.Or(cmp.Compare(j.own[a], j.own[b]), cmp.Compare(a, b))
	})
	for _, d := range byAge[:over] {
		delete(j.own, d)
	}
}

// writeOwn writes this replica's access object.
func (j *Janitor) writeOwn(ctx context.Context) error {
	rec := accessRecord{Version: accessVersion, Replica: j.opts.ReplicaID, Written: j.now().UTC(), Access: j.own}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("s3janitor: encode the access record: %w", err)
	}
	_, err = j.client.PutObject(ctx, j.blobs.Bucket(), j.ownKey, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("s3janitor: write %s: %w", j.location(j.ownKey), err)
	}
	return nil
}

// errNotARecord says an access object holds something else.
var errNotARecord = errors.New("not an access record")

// readRecord reads and decodes the access object at key, refusing one
// larger than limit before reading it whole.
func (j *Janitor) readRecord(ctx context.Context, key string, limit int64) (accessRecord, error) {
	body, err := j.client.GetObject(ctx, j.blobs.Bucket(), key, minio.GetObjectOptions{})
	if err != nil {
		return accessRecord{}, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return accessRecord{}, err
	}
	if int64(len(data)) > limit {
		return accessRecord{}, fmt.Errorf("%w: over %d bytes", errNotARecord, limit)
	}
	var rec accessRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return accessRecord{}, fmt.Errorf("%w: %v", errNotARecord, err)
	}
	if rec.Version != accessVersion {
		return accessRecord{}, fmt.Errorf("%w: version %d, want %d", errNotARecord, rec.Version, accessVersion)
	}
	return rec, nil
}

// lastAccess is, per blob, the latest access any replica recorded.
type lastAccess map[digest.Digest]time.Time

// note records an access of d at t, keeping the latest.
func (la lastAccess) note(d digest.Digest, t time.Time) {
	if t.After(la[d]) {
		la[d] = t
	}
}

// readAccess reads every replica's access object and this replica's
// accesses not yet flushed. An object that is not a record, or too
// large, is ignored with a warning and counted in stats; a failure to
// list or read fails the run, since evicting without the accesses could
// remove what a replica is using.
func (j *Janitor) readAccess(ctx context.Context, lease *heldLease, now time.Time, stats *Stats) (lastAccess, error) {
	la := make(lastAccess)
	listCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range j.client.ListObjects(listCtx, j.blobs.Bucket(), minio.ListObjectsOptions{Prefix: j.accessDir(), Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("s3janitor: list %s: %w", j.location(j.accessDir()), obj.Err)
		}
		if err := j.keepLease(ctx, lease); err != nil {
			return nil, err
		}
		if err := j.readReplica(ctx, obj, now, la, stats); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3janitor: list %s: %w", j.location(j.accessDir()), err)
	}
	j.notePending(la)
	return la, nil
}

// readReplica adds the accesses of one access object to la.
func (j *Janitor) readReplica(ctx context.Context, obj minio.ObjectInfo, now time.Time, la lastAccess, stats *Stats) error {
	log := j.log.With("object", j.location(obj.Key))
	if obj.Size > j.opts.MaxAccessObjectSize {
		stats.BadAccessObjects++
		log.Warn("s3janitor: ignoring an access object over the size limit", "size", obj.Size, "limit", j.opts.MaxAccessObjectSize)
		return nil
	}
	rec, err := j.readRecord(ctx, obj.Key, j.opts.MaxAccessObjectSize)
	switch {
	case isNotFound(err):
		return nil // its replica's flush replaced it, or someone removed it
	case errors.Is(err, errNotARecord):
		stats.BadAccessObjects++
		log.Warn("s3janitor: ignoring an access object that is not an access record", "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("s3janitor: read %s: %w", j.location(obj.Key), err)
	}
	stats.AccessObjects++
	if skew := obj.LastModified.Sub(rec.Written).Abs(); !rec.Written.IsZero() && skew > j.opts.MaxClockSkew {
		log.Warn("s3janitor: a replica's clock and the server's disagree; its accesses may count early or late",
			"replica", rec.Replica, "skew", skew.Round(time.Second))
	}
	if ignored := j.noteRecord(rec, now, la); ignored > 0 {
		log.Warn("s3janitor: ignoring accesses of invalid digests, or too far in the future",
			"replica", rec.Replica, "ignored", ignored)
	}
	return nil
}

// noteRecord adds rec's accesses to la, and returns how many it ignored.
// An access later than now by no more than MaxClockSkew is a replica's
// clock running ahead, and counts as now; one later still is bogus, and
// ignored rather than allowed to keep a blob forever.
func (j *Janitor) noteRecord(rec accessRecord, now time.Time, la lastAccess) (ignored int) {
	latest := now.Add(j.opts.MaxClockSkew)
	for d, unix := range rec.Access {
		t := time.Unix(unix, 0)
		if d.Validate() != nil || unix <= 0 || t.After(latest) {
			ignored++
			continue
		}
		la.note(d, minTime(t, now))
	}
	return ignored
}

// notePending adds this replica's accesses that are not in the bucket
// yet (a flush failed, or came after the listing).
func (j *Janitor) notePending(la lastAccess) {
	j.touchMu.Lock()
	defer j.touchMu.Unlock()
	for d, unix := range j.pending {
		la.note(d, time.Unix(unix, 0))
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// isNotFound reports whether err says the object does not exist (and not
// that the bucket does not).
func isNotFound(err error) bool {
	return err != nil && minio.ToErrorResponse(err).Code == minio.NoSuchKey
}
