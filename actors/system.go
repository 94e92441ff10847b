// Package actors holds what every goray process needs to run its
// components as Proto.Actor actors: an actor system whose logging goes to
// zerolog, and the zerolog logger itself.
//
// Usage:
//
//	log := actors.NewLogger(os.Stderr, zerolog.InfoLevel)
//	sys := actors.NewSystem(log.With().Str("component", "gcs").Logger())
//	pid := sys.Root.Spawn(actor.PropsFromProducer(newMyActor))
//	res, err := sys.Root.RequestFuture(pid, &protos.ListNodesRequest{}, time.Second).Result()
package actors

import (
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
		return slog.New(NewSlogHandler(l, &SlogOptions{InfoAsDebug: true}))
	}))
}
