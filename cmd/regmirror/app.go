package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func newApp() *cli.App {
	app := &cli.App{
		Name:                 "regmirror",
		Usage:                "a pull-through container registry mirror for Docker Hub and other registries",
		Version:              buildVersion(),
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			serveCommand(),
			cacheCommand(),
			prefetchCommand(),
			configCommand(),
			htpasswdCommand(),
			versionCommand(),
			completionCommand(),
		},
	}
	guardUsage(app)
	return app
}

// Flags shared by several commands. Each call makes a new flag: urfave/cli
// writes into a flag while parsing, so one instance must not serve two apps.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "config",
		Usage:       "YAML configuration file (see docs/configuration.md); flags and environment override it",
		EnvVars:     []string{"REGMIRROR_CONFIG"},
		DefaultText: "none: built-in defaults",
	}
}

func dataDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "data-dir",
		Usage:       "directory of the cache: blob files and the index",
		EnvVars:     []string{"REGMIRROR_DATA_DIR"},
		DefaultText: defaultDataDir,
	}
}

func logLevelFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "log-level",
		Usage:       "debug, info, warn or error",
		EnvVars:     []string{"REGMIRROR_LOG_LEVEL"},
		DefaultText: defaultLogLevel,
	}
}

func logFormatFlag() cli.Flag {
	return &cli.StringFlag{
		Name:        "log-format",
		Usage:       "text or json",
		EnvVars:     []string{"REGMIRROR_LOG_FORMAT"},
		DefaultText: defaultLogFormat,
	}
}

// newLogger builds the process's logger from the log settings.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLogLevel(level)
	if err != nil {
		return nil, usageErrorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		opts.ReplaceAttr = durationsInSeconds
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageErrorf("--log-format: %q is neither text nor json", format)
	}
}

// durationsInSeconds writes durations as seconds in a float, the unit log
// pipelines and Prometheus share, instead of slog's integer nanoseconds.
// Text logs keep Go's readable "1.5s".
func durationsInSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintln(c.App.Writer, "regmirror", buildVersion())
			return err
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	// A build from a checkout without -ldflags says "(devel)": say it plainly.
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
