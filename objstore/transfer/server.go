package transfer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

// ServerOptions configure a Server. The zero value is usable.
type ServerOptions struct {
	Logger zerolog.Logger
	// OnServe, if set, is called after the first chunk (offset 0) of an
	// object went out to a puller, so the raylet can record which node
	// holds a copy. puller is the PullerOptions.Name of the pulling node,
	// or its connection's remote address. It runs on the connection's
	// goroutine: keep it short.
	OnServe func(id protos.ObjectID, puller string)
	// SocketBuffer is SO_SNDBUF and SO_RCVBUF of accepted connections, in
	// bytes; zero means DefaultSocketBuffer, negative leaves the kernel's
	// autotuning alone.
	SocketBuffer int
	// WriteTimeout bounds the sending of one reply, so that a puller that
	// stops reading does not keep an object pinned forever. Zero means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is ServerOptions.WriteTimeout's default: generous,
// since a chunk of a few MiB normally leaves in milliseconds.
const DefaultWriteTimeout = time.Minute

// ServerStats counts what a Server has served.
type ServerStats struct {
	Requests uint64 // chunk requests answered, errors included
	Objects  uint64 // requests at offset 0 served, i.e. pulls started
	Bytes    uint64 // object bytes sent
	Errors   uint64 // requests answered with an error code
	Conns    int    // connections open now
}

// Server serves the sealed objects of a store to pulling nodes. Each chunk
// request pins the object (restoring it if it was spilled) for as long as
// its bytes are being written to the socket, so the pin never outlives a
// request and a puller that goes away cannot leak one.
type Server struct {
	store *objstore.Store
	opts  ServerOptions
	log   zerolog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup // connection handlers

	requests, objects, bytes, errors atomic.Uint64

	// testHookServe, if set, runs before a chunk is pinned, so tests can
	// stall a transfer at a chosen chunk.
	testHookServe func(req *protos.PullChunkRequest)
}

// NewServer returns a server of store's objects; call Serve to accept
// connections.
func NewServer(store *objstore.Store, opts ServerOptions) *Server {
	if opts.SocketBuffer == 0 {
		opts.SocketBuffer = DefaultSocketBuffer
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	return &Server{
		store:     store,
		opts:      opts,
		log:       opts.Logger.With().Str("component", "transfer-server").Logger(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
}

// Serve accepts pulling connections on l until Close, then returns
// ErrServerClosed. l is closed when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if temporaryAcceptError(err) {
				// Running out of descriptors or memory passes; wait, as
				// net/http does, rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept")
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("transfer: serve: %w", err)
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// Close stops every Serve, closes all connections (pulls in flight fail on
// the pulling side) and waits for their handlers, so that the store is no
// longer touched once it returns. Calling it again is a no-op.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	var errs []error
	for l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transfer: close server: %w", err)
	}
	return nil
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return ServerStats{
		Requests: s.requests.Load(),
		Objects:  s.objects.Load(),
		Bytes:    s.bytes.Load(),
		Errors:   s.errors.Load(),
		Conns:    n,
	}
}

func temporaryAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// handle answers the requests of one connection, one at a time: a pulling
// node runs several connections to get chunks in parallel.
func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	h := s.store.NewHolder()
	defer func() {
		// A handler that panicked or failed mid-write may still hold a pin.
		s.store.ReleaseAll(h)
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	tuneConn(c, s.opts.SocketBuffer)
	remote := c.RemoteAddr().String()
	log := s.log.With().Str("puller_addr", remote).Logger()
	var (
		rbuf, wbuf []byte
		req        protos.PullChunkRequest
		reply      protos.PullChunkReply
		err        error
	)
	for {
		req.Reset()
		if rbuf, err = readMessage(c, rbuf, &req); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !s.isClosed() {
				log.Debug().Err(err).Msg("reading request")
			}
			return
		}
		if wbuf, err = s.serve(c, h, &req, &reply, wbuf); err != nil {
			if !s.isClosed() {
				log.Debug().Err(err).Msg("writing reply")
			}
			return
		}
		if s.opts.OnServe != nil && req.Offset == 0 && reply.ErrorCode == protos.TransferErrorCode_TRANSFER_OK {
			puller := req.Puller
			if puller == "" {
				puller = remote
			}
			s.opts.OnServe(protos.ObjectID(req.ObjectId), puller)
		}
	}
}

// serve answers one request. The object stays pinned only until its bytes
// are in the socket; the reply header and the bytes go out in one writev,
// straight from the shared-memory mapping. A non-nil error means the
// connection is broken.
func (s *Server) serve(c net.Conn, h objstore.Holder, req *protos.PullChunkRequest, reply *protos.PullChunkReply, wbuf []byte) ([]byte, error) {
	s.requests.Add(1)
	if s.testHookServe != nil {
		s.testHookServe(req)
	}
	reply.Reset()
	fail := func(code protos.TransferErrorCode, err error) ([]byte, error) {
		s.errors.Add(1)
		errorReply(reply, req.Offset, code, err)
		out, werr := appendMessage(wbuf, reply)
		if werr != nil {
			return out, werr
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		_, werr = c.Write(out)
		return out, werr
	}
	id, err := protos.ObjectIDFromBytes(req.ObjectId)
	if err != nil {
		return fail(protos.TransferErrorCode_TRANSFER_INVALID, err)
	}
	off, size, err := s.store.Acquire(id, h)
	if err != nil {
		return fail(errorCode(err), err)
	}
	defer s.store.Release(id, h)
	if req.Offset > size {
		return fail(protos.TransferErrorCode_TRANSFER_INVALID,
			fmt.Errorf("offset %d past the end of %s (%d bytes)", req.Offset, id, size))
	}
	n := min(req.Length, size-req.Offset)
	data, err := s.store.Segment().CheckedSlice(off+req.Offset, n)
	if err != nil {
		return fail(errorCode(err), err)
	}
	reply.ObjectSize, reply.Offset, reply.DataLength = size, req.Offset, n
	if wbuf, err = appendMessage(wbuf, reply); err != nil {
		return wbuf, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	bufs := net.Buffers{wbuf, data}
	if _, err := bufs.WriteTo(plain(c)); err != nil {
		return wbuf, err
	}
	s.bytes.Add(n)
	if req.Offset == 0 {
		s.objects.Add(1)
	}
	return wbuf, nil
}

// errorReply makes reply the refusal of a request at offset. A proto3
// string must be valid UTF-8 or the reply does not encode, and the puller
// would see a dropped connection instead of the reason; error texts can
// hold anything (a spill path is any bytes), so they are made valid and
// cut at a character boundary.
func errorReply(reply *protos.PullChunkReply, offset uint64, code protos.TransferErrorCode, err error) {
	msg := strings.ToValidUTF8(err.Error(), string(utf8.RuneError))
	if len(msg) > maxErrorMessage {
		n := maxErrorMessage
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	reply.Reset()
	reply.Offset, reply.ErrorCode, reply.ErrorMessage = offset, code, msg
}
