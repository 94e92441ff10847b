package jobserver

import (
	"context"
	"sync"
	"time"

	"github.com/goray/goray/gcs"
)

// logWriter stores a driver's output in the job logs stream: what the
// driver writes is gathered for up to logFlushEvery or logChunk bytes and
// published (acknowledged) as one message on the job's subject.
type logWriter struct {
	s       *Server
	subject string

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
	lost  bool
}

// logFlushEvery bounds how long output waits before it is stored (and
// readable with goray job logs).
const logFlushEvery = 200 * time.Millisecond

func (s *Server) newLogWriter(id string) *logWriter {
	return &logWriter{s: s, subject: gcs.JobLogsSubject(id)}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		take := min(len(p), logChunk-len(w.buf))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) >= logChunk {
			w.flushLocked()
		}
	}
	if len(w.buf) > 0 && w.timer == nil {
		w.timer = time.AfterFunc(logFlushEvery, w.Flush)
	}
	return n, nil
}

// Flush stores what is gathered.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

func (w *logWriter) flushLocked() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if len(w.buf) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := w.s.js.Publish(ctx, w.subject, w.buf); err != nil && !w.lost {
		// The driver goes on; its output is lost until the store
		// answers again.
		w.lost = true
		w.s.log.Warn().Err(err).Str("subject", w.subject).Msg("store a job's output")
	} else if err == nil {
		w.lost = false
	}
	w.buf = w.buf[:0]
}

// Close stores the rest.
func (w *logWriter) Close() error {
	w.Flush()
	return nil
}
