package mirror_test

import (
	"github.com/regmirror/regmirror/cache"
	"github.com/regmirror/regmirror/mirror"
	"github.com/regmirror/regmirror/upstream"
)

// The implementations the daemon hands the mirror. cache and upstream must
// not import mirror, so their types are checked against its interfaces
// here, where both are visible; a change to either side fails to compile.
var (
	_ mirror.Cache      = (*cache.Store)(nil)
	_ mirror.Content    = (*cache.Store)(nil)
	_ mirror.Hosted     = (*cache.Hosted)(nil)
	_ mirror.Upstream   = (*upstream.Client)(nil)
	_ mirror.Visibility = (*upstream.Client)(nil)
)
