package mirror

import "context"

// RefreshDue runs one pass of the background refresh loop (see Run) and
// returns how many tags it revalidated, so tests can drive it with their
// clock instead of waiting for Run's ticker.
func (m *Mirror) RefreshDue(ctx context.Context) int { return m.refreshDue(ctx) }
