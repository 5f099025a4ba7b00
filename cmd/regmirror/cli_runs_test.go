package main

import (
	"context"
	"sync"

	"github.com/urfave/cli/v2"
)

// appRuns serialises the tests' in-process runs of the CLI: urfave/cli v2
// keeps its help flag and help command in package globals that every run
// writes to, so two apps running at once in one process race (the binary
// only ever runs one). Daemons the tests start do not go through it.
var appRuns sync.Mutex

// runAppLocked runs app with args, one run at a time.
func runAppLocked(ctx context.Context, app *cli.App, args []string) error {
	appRuns.Lock()
	defer appRuns.Unlock()
	return app.RunContext(ctx, args)
}
