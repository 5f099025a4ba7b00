// Package cache is regmirror's content-addressed store: blob files on disk
// under <dir>/blobs/sha256/<xx>/<hex>, plus a Badger index of what is cached
// (blob sizes and access times, manifests with their exact bytes, tags with
// the time they were last confirmed upstream, and which repositories use
// which content). A Store fills a missing blob with exactly one upstream
// download per digest, streams it to every concurrent reader while it is
// being written, and publishes it only after its size and digest have been
// verified, so a reader never receives the final byte of an unverified blob.
//
// Every download is bounded (Limits): a body is never read past its
// announced size, nor past a hard cap when its size is unknown; it has a
// wall-clock limit beside the stall timeout; and it stops when its last
// reader leaves, unless the blob is worth keeping (size known, within what
// the cache keeps). Everything the Store writes is private to its user.
//
// For eviction and pruning, the Store keeps its usage in memory (Usage,
// Grew: blobs, downloads in flight, and what manifests and tags count),
// lists what it holds with access times that include reads not yet
// flushed (Blobs, Inventory), and removes content (RemoveBlobs,
// RemoveManifests) except what Keep marked and any blob with an open reader
// or a download in flight: readers and removals exclude each other through
// a use table, so no reader ever sees a blob vanish. Open reconciles the
// index with the blob files after a crash; Verify re-hashes blobs.
//
// The blob bytes go through a blobstore.Interface: fileBlobs, the files
// under <dir>/blobs with temp files in <dir>/tmp, is the one there is, and
// it hands out *os.File for sendfile. It passes the contract suite in
// cache/storagetest, as any other must. The index rows go through an
// index.DB, whose keys and row encodings this package owns (index.go):
// Badger, in <dir>/index, opened by cache/index/badgerindex, is the one
// there is, and it passes the contract suite in cache/index/indextest.
// Absent content is reported with errors wrapping fs.ErrNotExist.
package cache
