// Package actors holds what every goray process needs to run its
// components as Proto.Actor actors: an actor system whose logging goes to
// zerolog (through zerolog's own slog handler), and the zerolog logger
// itself.
//
// Usage:
//
//	log := actors.NewLogger(os.Stderr, zerolog.InfoLevel)
//	sys := actors.NewSystem(log.With().Str("component", "gcs").Logger())
//	pid := sys.Root.Spawn(actor.PropsFromProducer(newMyActor))
//	res, err := sys.Root.RequestFuture(pid, &protos.ListNodesRequest{}, time.Second).Result()
package actors

import (
	"context"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// NewSystem creates an actor system that logs into logger. Proto.Actor's
// default logger writes colored text to stderr on its own; routing it
// through zerolog keeps one log format and one level switch per process.
// Its info-level lifecycle chatter is demoted to debug.
func NewSystem(logger zerolog.Logger) *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(sys *actor.ActorSystem) *slog.Logger {
		l := logger.With().Str("lib", "protoactor").Str("actor_system", sys.ID).Logger()
		return slog.New(infoAsDebug{zerolog.NewSlogHandler(l)})
	}))
}

// infoAsDebug lowers Info records to Debug: Proto.Actor reports routine
// lifecycle (system started, dead letters, restarts) at info, which would
// drown goray's own info lines.
type infoAsDebug struct{ slog.Handler }

func demote(l slog.Level) slog.Level {
	if l >= slog.LevelInfo && l < slog.LevelWarn {
		return slog.LevelDebug
	}
	return l
}

// Enabled must agree with Handle, or an info-level logger would let slog
// build records only to drop them.
func (h infoAsDebug) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, demote(l))
}

func (h infoAsDebug) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.Handler.Handle(ctx, r)
}

// WithAttrs and WithGroup re-wrap so that derived loggers (slog.Logger.With)
// keep the demotion.
func (h infoAsDebug) WithAttrs(attrs []slog.Attr) slog.Handler {
	return infoAsDebug{h.Handler.WithAttrs(attrs)}
}

func (h infoAsDebug) WithGroup(name string) slog.Handler {
	return infoAsDebug{h.Handler.WithGroup(name)}
}
