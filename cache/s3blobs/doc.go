// Package s3blobs keeps the cache's blobs in an S3-compatible bucket: a
// blobstore.Interface for replicas that share their bytes, or for a host
// whose disk is too small for the cache.
//
// Objects are content-addressed, <prefix>blobs/<alg>/<xx>/<hex>, as the
// local store's files are. A Writer spools to a local temporary file, so
// that readers following a download read what was written so far, and its
// Commit uploads the file with one PUT, or a multipart upload for large
// blobs: either way S3 shows the object whole or not at all, so a blob key
// never names part of a blob. A process killed during a multipart upload
// leaves the upload incomplete, which S3 lists as no object; New aborts
// such uploads under the prefix once they are an hour old.
//
// A File reads with ranged GETs: one stream for Read, from wherever Seek
// left it, and one request per ReadAt. Not-found crosses the boundary as
// fs.ErrNotExist; every other error names the operation and the object,
// never the credentials.
package s3blobs
