package wire

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server accepts connections on a listener and serves each with a Handler.
type Server struct {
	l    net.Listener
	h    Handler
	opts options
	addr string

	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool

	onOpen  atomic.Pointer[func(*Conn)]
	onClose atomic.Pointer[func(*Conn, error)]
}

// NewServer returns a server for l; call Serve to start accepting. opts
// apply to every accepted conn.
func NewServer(l net.Listener, h Handler, opts ...Option) *Server {
	return &Server{
		l:     l,
		h:     h,
		opts:  buildOptions(opts),
		addr:  endpointOf(l.Addr()),
		conns: make(map[*Conn]struct{}),
	}
}

// Addr is the listener's address in endpoint syntax ("unix:/path",
// "tcp:127.0.0.1:port"), suitable for Dial.
func (s *Server) Addr() string { return s.addr }

// OnConnOpen registers f to run for each accepted conn before its first
// request is served (e.g. to SetValue). Set it before Serve.
func (s *Server) OnConnOpen(f func(*Conn)) { s.onOpen.Store(&f) }

// OnConnClose registers f to run once for each accepted conn when it
// closes, with the reason (wrapping ErrClosed; io.EOF when the peer went
// away cleanly). It runs after the conn's pending calls were failed, on the
// goroutine that closed the conn, and must not block for long. Set it
// before Serve.
func (s *Server) OnConnClose(f func(*Conn, error)) { s.onClose.Store(&f) }

// NumConns reports how many accepted conns are open.
func (s *Server) NumConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Serve accepts connections until the listener fails or Close is called;
// it returns nil after Close.
func (s *Server) Serve() error {
	var backoff time.Duration
	for {
		nc, err := s.l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if transientAcceptError(err) {
				// Out of descriptors or a client that reset before we
				// accepted: wait a little instead of spinning or giving up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.opts.logger.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.accept(nc)
	}
}

func transientAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}

func (s *Server) accept(nc net.Conn) {
	c := newConnStopped(nc, s.h, endpointOf(nc.RemoteAddr()), &s.opts, s.connClosed)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.shutdown(ErrClosed, false)
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if f := s.onOpen.Load(); f != nil {
		(*f)(c)
	}
	c.startReader()
}

func (s *Server) connClosed(c *Conn, err error) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if !ok {
		return // rejected during Close before it was ever registered
	}
	if f := s.onClose.Load(); f != nil {
		(*f)(c, err)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Flush waits until every accepted conn has written what was queued on it
// when Flush was called (see Conn.Flush), flushing them in parallel. It
// returns the conns' errors joined, or ctx.Err() if ctx ended first.
func (s *Server) Flush(ctx context.Context) error {
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { errs[i] = c.Flush(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops accepting and closes every accepted conn (flushing what they
// had queued, in parallel). It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	err := s.l.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
	return err
}
