package badgerindex

import (
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger routes Badger's warnings and errors to slog and drops its
// chatty informational messages.
type badgerLogger struct {
	log *slog.Logger
}

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error(badgerMessage(format, args), "component", "badger")
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(badgerMessage(format, args), "component", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

func badgerMessage(format string, args []any) string {
	return strings.TrimSpace(fmt.Sprintf(format, args...))
}
