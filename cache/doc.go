// Package cache is regmirror's content-addressed store: blob files on disk
// under <dir>/blobs/sha256/<xx>/<hex>, plus a Badger index of what is cached
// (blob sizes and access times, manifests with their exact bytes, tags with
// the time they were last confirmed upstream, and which repositories use
// which content). A Store fills a missing blob with exactly one upstream
// download per digest, streams it to every concurrent reader while it is
// being written, and publishes it only after its size and digest have been
// verified, so a reader never receives the final byte of an unverified blob.
// Badger stays inside this package: absent content is reported with errors
// wrapping fs.ErrNotExist.
package cache
