// Package badgerindex keeps the cache's index rows in Badger: the one
// index.DB there is, and the only package that imports Badger. Open tunes
// Badger for a small footprint and opens it safely: every table's footer
// (and, unless a clean Close stamped the tables, every block's trailer) is
// checked before Badger reads it, because Badger panics on some damage
// instead of failing; torn or corrupt files fail Open wrapping
// index.ErrDamaged, or with Badger's own error. Close stamps the tables so
// that the next Open need not read them in full.
package badgerindex
