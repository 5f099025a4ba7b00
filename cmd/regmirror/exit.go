package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// The process's exit statuses, for scripts and service managers. exitCode
// is the one place that maps errors to them.
const (
	exitOK = 0
	// exitFailure: anything else went wrong (the network, the disk, a
	// daemon that would not start).
	exitFailure = 1
	// exitUsage: the command line is wrong: an unknown command or flag, a
	// flag value that does not parse.
	exitUsage = 2
	// exitConfig: the configuration is wrong (see configErrors).
	exitConfig = 3
	// exitCorrupt: `cache verify` found corrupt blobs (and removed them).
	exitCorrupt = 4
)

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf is fmt.Errorf for a mistake on the command line.
func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// errCorrupt is wrapped by the error of a `cache verify` that found
// corrupt blobs.
var errCorrupt = errors.New("corrupt blobs found")

// exitCode is the exit status err calls for.
func exitCode(err error) int {
	var usage *usageError
	var config *configErrors
	var exit cli.ExitCoder
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &config):
		return exitConfig
	case errors.Is(err, errCorrupt):
		return exitCorrupt
	case errors.As(err, &exit):
		// regmirror itself returns no cli.ExitCoder: these come from
		// urfave/cli's help, e.g. "No help topic for 'x'".
		return exitUsage
	}
	return exitFailure
}

// run runs the command line args, writes its error to stderr and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.RunContext(ctx, args)
	if err != nil {
		fmt.Fprintln(stderr, "regmirror:", strings.ReplaceAll(err.Error(), "\n", "\nregmirror: "))
	}
	return exitCode(err)
}

// guardUsage makes every mistake on app's command line a usageError with
// a clear message: a flag that is not defined or does not parse, and an
// unknown command, which urfave/cli would otherwise answer with help and
// success. It also keeps urfave/cli from exiting the process itself, so
// that exitCode decides every status.
func guardUsage(app *cli.App) {
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.OnUsageError = onUsageError
	app.Action = unknownCommand
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.OnUsageError = onUsageError
			if len(cmd.Subcommands) > 0 && cmd.Action == nil {
				cmd.Action = unknownCommand
			}
			walk(cmd.Subcommands)
		}
	}
	walk(app.Commands)
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageErrorf("%w (see '%s --help')", err, commandPath(c))
}

// unknownCommand is the action of a command that only groups others: with
// an argument, that argument is no command of it; without, show the help.
func unknownCommand(c *cli.Context) error {
	if c.Args().Present() {
		return usageErrorf("unknown command %q (see '%s --help')", c.Args().First(), commandPath(c))
	}
	return cli.ShowSubcommandHelp(c)
}

// commandPath is how the user typed the command c runs: "regmirror cache".
func commandPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" {
			names = append([]string{ctx.Command.Name}, names...)
		}
	}
	if len(names) == 0 || names[0] != c.App.Name {
		names = append([]string{c.App.Name}, names...)
	}
	return strings.Join(names, " ")
}
