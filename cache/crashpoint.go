package cache

// The steps of the commit and removal sequences at which a crash leaves a
// distinct state on disk. Each is where crashPoint is called.
const (
	stepSynced      = "synced"       // the temp file is complete and synced, not yet renamed
	stepRenamed     = "renamed"      // the blob file is in place, not yet indexed
	stepCommitted   = "committed"    // the blob is indexed
	stepRowsDeleted = "rows-deleted" // removal: the rows are gone, the files not yet
)

// crashPoint is called at each step; it does nothing. Crash tests replace
// it, in a child process, with one that kills the process at a chosen
// step, and then check that Open repairs what the crash left.
var crashPoint = func(step string) {}
