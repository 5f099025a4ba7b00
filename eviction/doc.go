// Package eviction keeps the cache within its budget and plans prunes.
//
// An Evictor watches usage (woken by the cache when it grows, and on an
// interval for free disk space) and, once usage is above the high watermark
// or free disk below its minimum, removes the least recently used blobs and
// manifests until usage is back under the low watermark. Manifests and tags
// count against the budget, so that a stream of distinct manifests cannot
// grow the index without bound. It never removes what the cache refuses:
// blobs being read or downloaded, and kept (hosted) content; nor pinned
// repositories' manifests, nor a manifest that a cached index still names.
//
// PlanPrune decides what an operator's prune removes, by image rather than
// by blob: by age, size and repository, sparing pinned repositories'
// manifests and every blob a remaining manifest names. Selection and
// planning are pure functions of their inputs, so they are table-tested
// without a disk.
package eviction
