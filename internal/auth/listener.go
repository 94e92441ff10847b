package auth

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Limits bound what peers may hold of a Listener. The zero value means the
// defaults.
type Limits struct {
	// MaxPending is how many connections may be in their handshake at
	// once, from all peers (default 128). Beyond it new connections are
	// closed at once: a flood of idle sockets costs a goroutine and a few
	// hundred bytes each, up to this many.
	MaxPending int
	// MaxPendingPerPeer is MaxPending for one peer (an IP address; every
	// unix socket peer counts as one): default 32.
	MaxPendingPerPeer int
	// MaxConnsPerPeer bounds a peer's authenticated connections (default
	// 4096: a node whose hundreds of workers each talk to this process).
	MaxConnsPerPeer int
}

// Defaults of Limits.
const (
	DefaultMaxPending        = 128
	DefaultMaxPendingPerPeer = 32
	DefaultMaxConnsPerPeer   = 4096
)

func (l Limits) withDefaults() Limits {
	if l.MaxPending <= 0 {
		l.MaxPending = DefaultMaxPending
	}
	if l.MaxPendingPerPeer <= 0 {
		l.MaxPendingPerPeer = DefaultMaxPendingPerPeer
	}
	if l.MaxConnsPerPeer <= 0 {
		l.MaxConnsPerPeer = DefaultMaxConnsPerPeer
	}
	return l
}

// ListenerStats counts what a Listener did.
type ListenerStats struct {
	Accepted uint64 // connections that authenticated
	Failed   uint64 // handshakes that failed (wrong key, garbage, timeout)
	Refused  uint64 // connections closed unread: over a limit
	Pending  int    // handshakes under way now
}

// Listener wraps a listener so that Accept returns only connections that
// passed the handshake. Handshakes run on goroutines of their own, bounded
// by Limits and the handshaker's timeout, so a slow or hostile peer never
// holds up the accept loop or anyone else's handshake.
type Listener struct {
	inner  net.Listener
	h      *Handshaker
	limits Limits
	log    zerolog.Logger

	ready chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	pending map[string]int // per peer
	authed  map[string]int // per peer
	total   int            // all pending

	accepted, failed, refused atomic.Uint64
}

// NewListener starts accepting on inner. A nil h returns a listener that
// authenticates nothing but still enforces MaxConnsPerPeer.
func NewListener(inner net.Listener, h *Handshaker, limits Limits, log zerolog.Logger) *Listener {
	l := &Listener{
		inner:   inner,
		h:       h,
		limits:  limits.withDefaults(),
		log:     log.With().Str("component", "auth").Str("listener", inner.Addr().String()).Logger().Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute}),
		ready:   make(chan net.Conn),
		errc:    make(chan error, 1),
		done:    make(chan struct{}),
		pending: map[string]int{},
		authed:  map[string]int{},
	}
	go l.acceptLoop()
	return l
}

// Accept returns the next authenticated connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept sees it too
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes under way are abandoned (their
// connections closed by their deadlines or at once when they finish).
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	n := l.total
	l.mu.Unlock()
	return ListenerStats{Accepted: l.accepted.Load(), Failed: l.failed.Load(), Refused: l.refused.Load(), Pending: n}
}

func (l *Listener) acceptLoop() {
	var backoff time.Duration
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if transient(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				time.Sleep(backoff)
				continue
			}
			l.errc <- err
			return
		}
		backoff = 0
		peer := peerOf(nc)
		if !l.admit(peer) {
			l.refused.Add(1)
			_ = nc.Close()
			l.log.Warn().Str("peer", peer).Msg("refused a connection: too many handshakes under way")
			continue
		}
		go l.handshake(nc, peer)
	}
}

// admit counts a new connection as pending, unless a limit says no.
func (l *Listener) admit(peer string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.limits.MaxPending || l.pending[peer] >= l.limits.MaxPendingPerPeer {
		return false
	}
	l.total++
	l.pending[peer]++
	return true
}

func (l *Listener) handshake(nc net.Conn, peer string) {
	conn, err := l.h.Server(nc)
	l.mu.Lock()
	l.total--
	if l.pending[peer]--; l.pending[peer] == 0 {
		delete(l.pending, peer)
	}
	over := err == nil && l.authed[peer] >= l.limits.MaxConnsPerPeer
	if err == nil && !over {
		l.authed[peer]++
	}
	l.mu.Unlock()
	switch {
	case err != nil:
		l.failed.Add(1)
		ev := l.log.Debug()
		if errors.Is(err, ErrDenied) || errors.Is(err, ErrProtocol) {
			ev = l.log.Warn()
		}
		ev.Err(err).Str("peer", peer).Msg("refused an unauthenticated connection")
		return
	case over:
		l.refused.Add(1)
		_ = conn.Close()
		l.log.Warn().Str("peer", peer).Int("limit", l.limits.MaxConnsPerPeer).Msg("refused a connection: its peer has too many")
		return
	}
	c := &Conn{Conn: conn, raw: nc, release: func() { l.release(peer) }}
	select {
	case l.ready <- c:
		l.accepted.Add(1)
	case <-l.done:
		_ = c.Close()
	}
}

func (l *Listener) release(peer string) {
	l.mu.Lock()
	if l.authed[peer]--; l.authed[peer] <= 0 {
		delete(l.authed, peer)
	}
	l.mu.Unlock()
}

// Conn is an authenticated connection from a Listener.
type Conn struct {
	net.Conn
	raw     net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and gives its place back to its peer.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// NetConn is the socket under any TLS, for socket options.
func (c *Conn) NetConn() net.Conn { return c.raw }

// Plain returns the socket if the connection carries no TLS, so a writer
// can use writev on it; nil otherwise.
func (c *Conn) Plain() net.Conn {
	if c.raw == c.Conn {
		return c.raw
	}
	return nil
}

func peerOf(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UnixAddr:
		return "unix"
	}
	return c.RemoteAddr().Network()
}

func transient(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
