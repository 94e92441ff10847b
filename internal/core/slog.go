package core

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/rs/zerolog"
)

// SlogLogger makes goray log into l: the runtime logs with zerolog, whose
// JSON events are handed to l's handler as slog records.
func SlogLogger(l *slog.Logger) InitOption {
	return func(o *initOptions) {
		if l == nil {
			return
		}
		zl := zerolog.New(slogWriter{l.Handler()}).With().Timestamp().Logger().Level(zerolog.DebugLevel)
		o.logger = &zl
	}
}

// slogWriter turns zerolog's JSON events into slog records. It is on the
// log path only (warnings by default), never on a task's path.
type slogWriter struct{ h slog.Handler }

func (w slogWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.NoLevel, p)
}

func (w slogWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	lv := slogLevel(level)
	if !w.h.Enabled(context.Background(), lv) {
		return len(p), nil
	}
	var fields map[string]any
	if err := json.Unmarshal(p, &fields); err != nil {
		fields = map[string]any{zerolog.MessageFieldName: string(p)}
	}
	msg, _ := fields[zerolog.MessageFieldName].(string)
	t := time.Now()
	if s, ok := fields[zerolog.TimestampFieldName].(string); ok {
		if pt, err := time.Parse(zerolog.TimeFieldFormat, s); err == nil {
			t = pt
		}
	}
	delete(fields, zerolog.MessageFieldName)
	delete(fields, zerolog.TimestampFieldName)
	delete(fields, zerolog.LevelFieldName)
	r := slog.NewRecord(t, lv, msg, 0)
	for k, v := range fields {
		r.AddAttrs(slog.Any(k, v))
	}
	return len(p), w.h.Handle(context.Background(), r)
}

func slogLevel(l zerolog.Level) slog.Level {
	switch {
	case l <= zerolog.DebugLevel:
		return slog.LevelDebug
	case l == zerolog.InfoLevel:
		return slog.LevelInfo
	case l == zerolog.WarnLevel:
		return slog.LevelWarn
	case l == zerolog.NoLevel:
		return slog.LevelInfo
	}
	return slog.LevelError
}
