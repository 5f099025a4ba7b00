package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
)

// LogConfig is the `log:` section: how the daemon logs. --log-level and
// --log-format, and their environment variables, override it.
type LogConfig struct {
	// Level is debug, info, warn or error (default info).
	Level string `yaml:"level"`
	// Format is text (key=value) or json, one object a line (default text).
	Format string `yaml:"format"`
}

// Defaults of the log section.
const (
	defaultLogLevel  = "info"
	defaultLogFormat = "text"
)

func (c LogConfig) level() string  { return cmp.Or(c.Level, defaultLogLevel) }
func (c LogConfig) format() string { return cmp.Or(c.Format, defaultLogFormat) }

func (c LogConfig) validate() error {
	var errs []error
	if _, err := parseLogLevel(c.level()); err != nil {
		errs = append(errs, keyErrorf("log.level", "log.level: %w", err))
	}
	if err := checkLogFormat(c.format()); err != nil {
		errs = append(errs, keyErrorf("log.format", "log.format: %w", err))
	}
	return errors.Join(errs...)
}

// parseLogLevel reads debug, info, warn or error (slog's names, with an
// offset such as "info+2" as slog allows).
func parseLogLevel(s string) (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not a level: want debug, info, warn or error", s)
	}
	return lvl, nil
}

func checkLogFormat(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("%q is neither text nor json", s)
	}
	return nil
}
