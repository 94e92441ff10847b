package actors

import (
	"io"
	"os"

	"github.com/rs/zerolog"
)

// NewLogger returns the zerolog logger goray components share: JSON lines
// with a timestamp, or a human-readable console format when w is a terminal
// (an operator watching a foreground daemon wants to read it; files and
// pipes want JSON for tools).
func NewLogger(w io.Writer, level zerolog.Level) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	if isTerminal(w) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// isTerminal is deliberately crude (any character device counts): it only
// chooses between two readable formats, so a false positive is harmless and
// it needs no platform-specific ioctl.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0
}
