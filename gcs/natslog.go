package gcs

import (
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// natsLogger bridges nats-server's logger into zerolog. Levels are shifted
// down one step because nats-server treats its startup banner and every
// client connect as notices; goray's info level is for goray events, so a
// normal run stays quiet.
type natsLogger struct {
	log zerolog.Logger
	// fatal holds the first Fatalf message. nats-server's own logger exits
	// the process on Fatalf; an embedded server must instead fail Start
	// (e.g. port in use, JetStream store unusable) and leave the process up.
	fatal atomic.Pointer[string]
}

var _ server.Logger = (*natsLogger)(nil)

func newNATSLogger(log zerolog.Logger) *natsLogger {
	return &natsLogger{log: log.With().Str("lib", "nats-server").Logger()}
}

// flags tells nats-server whether to call Debugf/Tracef at all, which spares
// it formatting lines that would be dropped.
func (l *natsLogger) flags() (debug, trace bool) {
	on := l.log.GetLevel() <= zerolog.TraceLevel && zerolog.GlobalLevel() <= zerolog.TraceLevel
	return on, on
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.fatal.CompareAndSwap(nil, &msg)
	l.log.Error().Bool("fatal", true).Msg(msg)
}

// fatalError returns the first fatal message, if any.
func (l *natsLogger) fatalError() (string, bool) {
	if p := l.fatal.Load(); p != nil {
		return *p, true
	}
	return "", false
}
