package wire

import (
	"context"
	"net"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
)

// Defaults for Options.
const (
	DefaultMaxFrameSize    = 512 << 20
	DefaultReadBufferSize  = 64 << 10
	DefaultSocketBuffer    = 4 << 20
	DefaultCloseFlushLimit = time.Second
)

// Option configures a Conn (via Dial or NewConn) or every Conn a Server
// accepts (via NewServer).
type Option func(*options)

type options struct {
	auth           Authenticator
	logger         zerolog.Logger
	loggerSet      bool
	maxFrame       int
	readBuf        int
	sockBuf        int
	closeFlushWait time.Duration
}

func buildOptions(opts []Option) options {
	o := options{
		maxFrame:       DefaultMaxFrameSize,
		readBuf:        DefaultReadBufferSize,
		sockBuf:        DefaultSocketBuffer,
		closeFlushWait: DefaultCloseFlushLimit,
	}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if !o.loggerSet {
		// Read the global at construction time so applications that
		// configure zerolog's global logger at startup are honoured.
		o.logger = log.Logger
	}
	o.logger = o.logger.With().Str("component", "wire").Logger()
	return o
}

// WithLogger sets the logger used for connection-level events (malformed
// frames, handler panics). The default is zerolog's global logger.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) { o.logger, o.loggerSet = l, true }
}

// WithMaxFrameSize bounds the payload of a single frame, in both
// directions. Sending a larger message fails with ErrFrameTooLarge; receiving
// one closes the connection. Values <= 0 or above 4 GiB-1 (the header's
// length field) are clamped.
func WithMaxFrameSize(n int) Option {
	return func(o *options) {
		switch {
		case n <= 0:
			n = DefaultMaxFrameSize
		case uint64(n) > 1<<32-1:
			n = 1<<32 - 1
		}
		o.maxFrame = n
	}
}

// WithReadBufferSize sets the size of the per-connection read buffer.
// Frames that fit are handed to handlers without a copy; larger frames are
// read into a buffer of their own.
func WithReadBufferSize(n int) Option {
	return func(o *options) {
		if n < 4<<10 {
			n = 4 << 10
		}
		o.readBuf = n
	}
}

// WithSocketBuffer sets SO_SNDBUF/SO_RCVBUF on the socket (the kernel may
// clamp it). Zero leaves the kernel defaults.
func WithSocketBuffer(n int) Option {
	return func(o *options) { o.sockBuf = n }
}

// WithCloseFlushTimeout bounds how long Close waits to write frames that
// were queued before it was called.
func WithCloseFlushTimeout(d time.Duration) Option {
	return func(o *options) { o.closeFlushWait = d }
}

// Authenticator runs the dialling side of a connection's handshake before
// any frame crosses it, and returns the connection to use (the same one,
// or one wrapped in TLS). *auth.Handshaker is one; the accepting side
// authenticates in the listener it gives NewServer (auth.Listener).
type Authenticator interface {
	Client(ctx context.Context, nc net.Conn) (net.Conn, error)
}

// WithAuthenticator makes Dial authenticate the connections it opens.
func WithAuthenticator(a Authenticator) Option {
	return func(o *options) { o.auth = a }
}
