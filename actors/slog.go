package actors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/rs/zerolog"
)

// SlogHandler is an slog.Handler that writes into a zerolog.Logger, so
// libraries that log through log/slog (Proto.Actor does) end up in the same
// stream, format and level filter as the rest of goray.
//
// Groups become nested JSON objects, as slog's own JSON handler does, so a
// record reads the same whichever handler produced it.
type SlogHandler struct {
	logger zerolog.Logger
	// frames[0] holds the attrs added outside any group; each later frame
	// opens a group (named by frame.group) and holds the attrs added in it.
	frames []slogFrame
	// infoAsDebug demotes slog's Info records: Proto.Actor reports routine
	// lifecycle at info, which would drown goray's own info lines.
	infoAsDebug bool
}

type slogFrame struct {
	group string
	attrs []slog.Attr
}

// SlogOptions tunes a SlogHandler.
type SlogOptions struct {
	// InfoAsDebug logs slog Info records at zerolog debug level.
	InfoAsDebug bool
}

// NewSlogHandler returns a handler forwarding to logger. opts may be nil.
func NewSlogHandler(logger zerolog.Logger, opts *SlogOptions) *SlogHandler {
	h := &SlogHandler{logger: logger, frames: []slogFrame{{}}}
	if opts != nil {
		h.infoAsDebug = opts.InfoAsDebug
	}
	return h
}

// ZerologLevel maps an slog level to the zerolog level it is written at.
// Levels between the named ones round down, as slog itself treats them
// (e.g. slog.LevelInfo+2 is still an info record). Nothing maps to
// zerolog's fatal or panic: a library log call must never end the process.
func ZerologLevel(l slog.Level) zerolog.Level {
	switch {
	case l >= slog.LevelError:
		return zerolog.ErrorLevel
	case l >= slog.LevelWarn:
		return zerolog.WarnLevel
	case l >= slog.LevelInfo:
		return zerolog.InfoLevel
	case l >= slog.LevelDebug:
		return zerolog.DebugLevel
	default:
		return zerolog.TraceLevel
	}
}

func (h *SlogHandler) level(l slog.Level) zerolog.Level {
	zl := ZerologLevel(l)
	if h.infoAsDebug && zl == zerolog.InfoLevel {
		return zerolog.DebugLevel
	}
	return zl
}

// Enabled consults both the logger's and zerolog's global level so slog
// callers skip building records nobody will see.
func (h *SlogHandler) Enabled(_ context.Context, l slog.Level) bool {
	zl := h.level(l)
	return zl >= h.logger.GetLevel() && zl >= zerolog.GlobalLevel()
}

// Handle writes one record.
func (h *SlogHandler) Handle(_ context.Context, r slog.Record) error {
	ev := h.logger.WithLevel(h.level(r.Level))
	if ev == nil {
		return nil
	}
	var rec []slog.Attr
	if r.NumAttrs() > 0 {
		rec = make([]slog.Attr, 0, r.NumAttrs())
		r.Attrs(func(a slog.Attr) bool {
			rec = append(rec, a)
			return true
		})
	}
	h.writeFrame(ev, 0, rec)
	ev.Msg(r.Message)
	return nil
}

// writeFrame writes frame i and, nested in it, the frames after it; the
// record's own attrs go in the innermost frame. It reports whether anything
// was written, because slog drops groups that end up empty.
func (h *SlogHandler) writeFrame(ev *zerolog.Event, i int, rec []slog.Attr) bool {
	wrote := false
	for _, a := range h.frames[i].attrs {
		wrote = writeAttr(ev, a) || wrote
	}
	if i+1 < len(h.frames) {
		inner := zerolog.Dict()
		if h.writeFrame(inner, i+1, rec) {
			ev.Dict(h.frames[i+1].group, inner)
			wrote = true
		}
		return wrote
	}
	for _, a := range rec {
		wrote = writeAttr(ev, a) || wrote
	}
	return wrote
}

// writeAttr follows slog's rules for odd attrs: an empty attr is dropped, a
// group with an empty key is inlined, an empty group is dropped.
func writeAttr(ev *zerolog.Event, a slog.Attr) bool {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return false
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindGroup:
		attrs := v.Group()
		if len(attrs) == 0 {
			return false
		}
		if a.Key == "" {
			wrote := false
			for _, ga := range attrs {
				wrote = writeAttr(ev, ga) || wrote
			}
			return wrote
		}
		d := zerolog.Dict()
		wrote := false
		for _, ga := range attrs {
			wrote = writeAttr(d, ga) || wrote
		}
		if wrote {
			ev.Dict(a.Key, d)
		}
		return wrote
	case slog.KindString:
		ev.Str(a.Key, v.String())
	case slog.KindInt64:
		ev.Int64(a.Key, v.Int64())
	case slog.KindUint64:
		ev.Uint64(a.Key, v.Uint64())
	case slog.KindFloat64:
		ev.Float64(a.Key, v.Float64())
	case slog.KindBool:
		ev.Bool(a.Key, v.Bool())
	case slog.KindDuration:
		ev.Dur(a.Key, v.Duration())
	case slog.KindTime:
		ev.Time(a.Key, v.Time())
	default:
		writeAny(ev, a.Key, v.Any())
	}
	return true
}

// writeAny prefers a value's own text form: Proto.Actor passes PIDs and
// errors whose JSON encoding is noisier than their String/Error.
func writeAny(ev *zerolog.Event, key string, x any) {
	switch x := x.(type) {
	case nil:
		ev.Interface(key, nil)
	case error:
		ev.AnErr(key, x)
	case fmt.Stringer:
		ev.Stringer(key, x)
	case []byte:
		ev.Bytes(key, x)
	default:
		ev.Interface(key, x)
	}
}

// WithAttrs returns a handler that adds attrs to every record, inside the
// groups opened so far.
func (h *SlogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := h.clone()
	last := &h2.frames[len(h2.frames)-1]
	last.attrs = append(slices.Clip(last.attrs), attrs...)
	return h2
}

// WithGroup returns a handler that nests later attrs under name.
func (h *SlogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := h.clone()
	h2.frames = append(h2.frames, slogFrame{group: name})
	return h2
}

// clone copies the frame list so derived handlers never share a backing
// array they might both append to.
func (h *SlogHandler) clone() *SlogHandler {
	h2 := *h
	h2.frames = slices.Clone(h.frames)
	return &h2
}
