package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

const (
	// Write buffers that grew past this (a large payload went through) are
	// dropped after the flush instead of being kept as the spare, so one
	// 100 MB message does not pin 200 MB per connection forever.
	maxRetainedWriteBuf = 1 << 20
	// Likewise for the reader's scratch buffer for frames that do not fit
	// in the bufio.Reader.
	maxRetainedReadBuf = 1 << 20
	initialWriteBuf    = 4 << 10
)

// Conn is one framed connection. Both ends are symmetric: either side may
// Call, Go or Notify, and either side serves the peer's requests with its
// Handler. All methods are safe for concurrent use.
type Conn struct {
	nc     net.Conn
	h      Handler
	opts   *options
	log    zerolog.Logger
	remote string

	// Write side. Appenders marshal into wbuf under wmu; the flusher swaps
	// wbuf with its spare and writes it without holding the lock.
	wmu    sync.Mutex
	wbuf   []byte
	closed bool  // guarded by wmu; no appends once set
	ended  bool  // guarded by wmu; shutdown ran (closed may come first, see writeFailed)
	err    error // guarded by wmu; why the conn closed
	// kick wakes the flusher. Capacity one: a token already there means
	// the flusher will look at wbuf again, so further sends are dropped.
	kick    chan struct{}
	flushed chan struct{} // closed when the flusher exits

	// What Flush waits on: queued counts the bytes appended to wbuf,
	// written the bytes the flusher has handed to the socket. A waiter is
	// done once written reaches queued as it was when it started.
	queued   uint64 // guarded by wmu
	written  atomic.Uint64
	fmu      sync.Mutex
	fwaiters []flushWaiter
	// nwaiters spares the flusher the lock when nobody waits (always but
	// while a process drains before it exits).
	nwaiters atomic.Int32

	// Pending outgoing requests. nil once the conn is closed, which is how
	// register learns it must not add more.
	pmu     sync.Mutex
	pending map[uint64]*call
	nextID  uint64

	closing atomic.Bool // fast check for the reader; set once shutdown runs
	done    chan struct{}
	onClose func(*Conn, error)
	value   atomic.Pointer[any]
}

// call is one outstanding request. Exactly one of resp/ch (Call) or done
// (Go) is used. Calls are pooled; whoever removes a call from the pending
// map owns it and is responsible for completing it.
type call struct {
	method protos.Method
	resp   proto.Message
	done   func(payload []byte, err error)
	ch     chan error // capacity 1, so completion never blocks the reader
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan error, 1)} }}

type flushWaiter struct {
	target uint64
	ch     chan struct{}
}

func getCall() *call { return callPool.Get().(*call) }

func putCall(cl *call) {
	cl.method, cl.resp, cl.done = 0, nil, nil
	callPool.Put(cl)
}

// NewConn wraps an established stream connection (for transports other than
// those Dial knows, or for tests) and starts its goroutines.
func NewConn(nc net.Conn, h Handler, opts ...Option) *Conn {
	o := buildOptions(opts)
	return newConn(nc, h, endpointOf(nc.RemoteAddr()), &o)
}

func newConn(nc net.Conn, h Handler, remote string, o *options) *Conn {
	c := newConnStopped(nc, h, remote, o, nil)
	c.startReader()
	return c
}

// newConnStopped starts only the flusher, so a server can register the conn
// and run OnConnOpen before the first request is served.
func newConnStopped(nc net.Conn, h Handler, remote string, o *options, onClose func(*Conn, error)) *Conn {
	tuneSocket(nc, o)
	c := &Conn{
		nc:      nc,
		h:       h,
		opts:    o,
		log:     o.logger.With().Str("local", endpointOf(nc.LocalAddr())).Str("remote", remote).Logger(),
		remote:  remote,
		wbuf:    make([]byte, 0, initialWriteBuf),
		kick:    make(chan struct{}, 1),
		flushed: make(chan struct{}),
		pending: make(map[uint64]*call),
		done:    make(chan struct{}),
		onClose: onClose,
	}
	go c.flushLoop()
	return c
}

func (c *Conn) startReader() { go c.readLoop() }

// RemoteEndpoint is the peer in endpoint syntax: the dialed endpoint for
// dialed conns, the socket's remote address for accepted ones (often just
// "unix:" or "unix:@" for unix sockets, which have no client name).
func (c *Conn) RemoteEndpoint() string { return c.remote }

// SetValue attaches user data to the conn (e.g. which worker it is).
func (c *Conn) SetValue(v any) { c.value.Store(&v) }

// Value returns what SetValue stored, or nil.
func (c *Conn) Value() any {
	if p := c.value.Load(); p != nil {
		return *p
	}
	return nil
}

// Done is closed once the conn is closed and all pending calls have been
// failed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns nil while the conn is open, then the reason it closed
// (always wrapping ErrClosed).
func (c *Conn) Err() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.err
}

// Close closes the conn. Frames queued before Close are still written (for
// at most the close flush timeout) so that, e.g., Notify followed by Close
// delivers the notification. Pending calls fail with ErrClosed. Close is
// idempotent and always returns nil.
func (c *Conn) Close() error {
	c.shutdown(ErrClosed, true)
	return nil
}

// Flush waits until every frame queued on the conn before the call has been
// written to the socket (handed to the kernel; the peer may not have read
// it yet). It returns nil then, the conn's error if the conn closed first
// with frames unwritten, or ctx.Err(). A process about to exit uses it so
// replies it already produced are not lost with it.
func (c *Conn) Flush(ctx context.Context) error {
	c.wmu.Lock()
	target := c.queued
	c.wmu.Unlock()
	if c.written.Load() >= target {
		return nil
	}
	ch := make(chan struct{})
	c.fmu.Lock()
	c.fwaiters = append(c.fwaiters, flushWaiter{target: target, ch: ch})
	c.nwaiters.Add(1)
	c.fmu.Unlock()
	// The flusher may have written the bytes before it could see this
	// waiter: look again.
	c.wakeFlushWaiters(c.written.Load())
	select {
	case <-ch:
		return nil
	case <-c.done:
		c.dropFlushWaiter(ch)
		if c.written.Load() >= target {
			return nil
		}
		return c.Err()
	case <-ctx.Done():
		c.dropFlushWaiter(ch)
		return ctx.Err()
	}
}

// wakeFlushWaiters releases the Flush calls whose frames are all written
// once written bytes are.
func (c *Conn) wakeFlushWaiters(written uint64) {
	c.fmu.Lock()
	kept := c.fwaiters[:0]
	for _, w := range c.fwaiters {
		if w.target <= written {
			close(w.ch)
			c.nwaiters.Add(-1)
			continue
		}
		kept = append(kept, w)
	}
	clear(c.fwaiters[len(kept):])
	c.fwaiters = kept
	c.fmu.Unlock()
}

func (c *Conn) dropFlushWaiter(ch chan struct{}) {
	c.fmu.Lock()
	for i, w := range c.fwaiters {
		if w.ch == ch {
			c.fwaiters = slices.Delete(c.fwaiters, i, i+1)
			c.nwaiters.Add(-1)
			break
		}
	}
	c.fmu.Unlock()
}

// Call sends a request and waits for its response, which is unmarshaled
// into resp (resp may be nil to discard it). Cancelling ctx abandons the
// wait and returns ctx.Err(); a response arriving later is dropped. An error
// reply from the peer is returned as *RemoteError.
func (c *Conn) Call(ctx context.Context, m protos.Method, req, resp proto.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cl := getCall()
	cl.method, cl.resp = m, resp
	id, err := c.register(cl)
	if err != nil {
		putCall(cl)
		return err
	}
	if err := c.send(kindRequest, m, id, req); err != nil {
		if c.unregister(id) {
			putCall(cl)
			return err
		}
		// The close path took the call first and is completing it.
		err = <-cl.ch
		putCall(cl)
		return err
	}
	cancel := ctx.Done()
	if cancel == nil {
		err = <-cl.ch
		putCall(cl)
		return err
	}
	select {
	case err = <-cl.ch:
	case <-cancel:
		if c.unregister(id) {
			putCall(cl)
			return ctx.Err()
		}
		// The reader already owns the call and is about to deliver (it
		// may be unmarshaling into resp right now), so wait for it rather
		// than return while resp is being written.
		err = <-cl.ch
	}
	putCall(cl)
	return err
}

// Go sends a request without waiting. done is called exactly once with the
// response payload (valid only during the call; unmarshal or copy it) or an
// error (*RemoteError, or one wrapping ErrClosed). It runs on the conn's
// reader goroutine, or on the goroutine that closes the conn, and must not
// block. If Go itself returns an error, done is not called.
func (c *Conn) Go(m protos.Method, req proto.Message, done func(payload []byte, err error)) error {
	cl := getCall()
	cl.method = m
	cl.done = done
	if done == nil {
		cl.done = func([]byte, error) {}
	}
	id, err := c.register(cl)
	if err != nil {
		putCall(cl)
		return err
	}
	if err := c.send(kindRequest, m, id, req); err != nil {
		if c.unregister(id) {
			putCall(cl)
			return err
		}
		// The close path owns the call and will report through done.
		return nil
	}
	return nil
}

// Notify sends a one-way message; the peer's handler sees OneWay set and
// no reply is expected.
func (c *Conn) Notify(m protos.Method, msg proto.Message) error {
	return c.send(kindOneWay, m, 0, msg)
}

// Reply answers req. It may be called from any goroutine, also long after
// the handler returned. Replying to a one-way request does nothing. If resp
// cannot be sent (too large, unmarshalable) the caller gets an error reply
// instead, so it is not left waiting, and the error is returned.
func (c *Conn) Reply(req *Request, resp proto.Message) error {
	if req.OneWay {
		return nil
	}
	err := c.send(kindResponse, req.Method, req.ID, resp)
	if err != nil && !errors.Is(err, ErrClosed) {
		_ = c.ReplyError(req, &RemoteError{Code: CodeInternal, Message: err.Error()})
	}
	return err
}

// ReplyError answers req with an error; the caller's Call returns a
// *RemoteError carrying the message and code. If err is (or wraps) a
// *RemoteError its code is used.
func (c *Conn) ReplyError(req *Request, err error) error {
	if req.OneWay {
		return nil
	}
	we := &protos.WireError{Message: "unknown error"}
	if err != nil {
		we.Message = err.Error()
		var re *RemoteError
		if errors.As(err, &re) {
			we.Code = re.Code
			if re == err {
				we.Message = re.Message
			}
		}
	}
	return c.send(kindError, req.Method, req.ID, we)
}

func (c *Conn) register(cl *call) (uint64, error) {
	c.pmu.Lock()
	if c.pending == nil {
		c.pmu.Unlock()
		return 0, c.Err()
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	c.pmu.Unlock()
	return id, nil
}

// unregister removes id and reports whether it was still there, i.e.
// whether the caller (rather than the reader or the close path) now owns
// the call.
func (c *Conn) unregister(id uint64) bool {
	c.pmu.Lock()
	_, ok := c.pending[id]
	if ok {
		delete(c.pending, id)
	}
	c.pmu.Unlock()
	return ok
}

func (c *Conn) kickFlusher() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// send appends one frame to the write buffer and wakes the flusher if the
// buffer was empty (otherwise a wake-up is already pending or the flusher
// will find the frame when it comes back for the next batch).
func (c *Conn) send(kind frameKind, m protos.Method, id uint64, msg proto.Message) error {
	if m < 0 || m > maxMethod {
		return fmt.Errorf("%w: %d", ErrBadMethod, int32(m))
	}
	// Sizing outside the lock (and letting MarshalAppend reuse the cached
	// size) keeps the critical section to a memcpy-like encode, lets us
	// reject oversized messages before touching the buffer, and grows the
	// buffer once for large messages.
	size := 0
	if msg != nil {
		size = proto.Size(msg)
	}
	if size > c.opts.maxFrame {
		return fmt.Errorf("%w: %s %s message is %d bytes, limit is %d", ErrFrameTooLarge, m, kind, size, c.opts.maxFrame)
	}
	c.wmu.Lock()
	if c.closed {
		err := c.err
		c.wmu.Unlock()
		return err
	}
	start := len(c.wbuf)
	buf := slices.Grow(c.wbuf, headerSize+size)[:start+headerSize]
	if size > 0 {
		var err error
		buf, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, msg)
		if err != nil {
			c.wbuf = buf[:start]
			c.wmu.Unlock()
			return fmt.Errorf("wire: marshal %s %s: %w", m, kind, err)
		}
	}
	putHeader(buf[start:], header{
		length: uint32(len(buf) - start - headerSize),
		kind:   kind,
		method: uint16(m),
		id:     id,
	})
	c.wbuf = buf
	c.queued += uint64(len(buf) - start)
	c.wmu.Unlock()
	if start == 0 {
		c.kickFlusher()
	}
	return nil
}

// flushLoop is the only writer of the socket. Each wake-up takes everything
// appended so far and writes it with one syscall, so under load many frames
// share a write, while an idle conn pays only one goroutine wake-up per
// frame (no timers). Two buffers alternate: appenders fill one while the
// other is being written.
func (c *Conn) flushLoop() {
	defer close(c.flushed)
	spare := make([]byte, 0, initialWriteBuf)
	for range c.kick {
		for {
			c.wmu.Lock()
			buf, closed := c.wbuf, c.closed
			if len(buf) == 0 {
				c.wmu.Unlock()
				if closed {
					return
				}
				break
			}
			c.wbuf = spare
			c.wmu.Unlock()
			if _, err := c.nc.Write(buf); err != nil {
				c.writeFailed(err)
				return
			}
			if n := c.written.Add(uint64(len(buf))); c.nwaiters.Load() > 0 {
				c.wakeFlushWaiters(n)
			}
			if cap(buf) > maxRetainedWriteBuf {
				buf = make([]byte, 0, initialWriteBuf)
			}
			spare = buf[:0]
		}
	}
}

// readLoop is the only reader of the socket. Frames that fit in the bufio
// buffer are dispatched straight from it (Peek, then Discard after the
// handler returns), so small messages are never copied before Unmarshal.
func (c *Conn) readLoop() {
	br := bufio.NewReaderSize(c.nc, c.opts.readBuf)
	var scratch []byte
	for !c.closing.Load() {
		hb, err := br.Peek(headerSize)
		if err != nil {
			c.readFailed(err, len(hb))
			return
		}
		h, err := parseHeader(hb, c.opts.maxFrame)
		if err != nil {
			c.log.Error().Err(err).Msg("closing connection: bad frame from peer")
			c.shutdown(err, false)
			return
		}
		total := headerSize + int(h.length)
		if total <= br.Size() {
			b, err := br.Peek(total)
			if err != nil {
				c.readFailed(err, len(b))
				return
			}
			c.dispatch(h, b[headerSize:])
			_, _ = br.Discard(total)
			continue
		}
		_, _ = br.Discard(headerSize)
		var p []byte
		if n := int(h.length); n <= maxRetainedReadBuf {
			if cap(scratch) < n {
				scratch = make([]byte, n)
			}
			p = scratch[:n]
			if n, err := io.ReadFull(br, p); err != nil {
				c.readFailed(err, headerSize+n)
				return
			}
		} else if p, err = readGrowing(br, n); err != nil {
			c.readFailed(err, headerSize+len(p))
			return
		}
		c.dispatch(h, p)
	}
}

// readGrowing reads an n-byte payload into a buffer that grows as the bytes
// arrive (doubling from maxRetainedReadBuf), so a header declaring more
// than its sender sends costs the receiver what was sent, not what was
// declared.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, 2*maxRetainedReadBuf))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), cap(buf)))
		}
		k, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func (c *Conn) readFailed(err error, got int) {
	if c.closing.Load() {
		return // we closed the socket ourselves
	}
	switch {
	case errors.Is(err, io.EOF) && got == 0:
		err = fmt.Errorf("peer closed the connection: %w", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("peer closed the connection mid-frame (%d bytes in): %w", got, io.ErrUnexpectedEOF)
	default:
		err = fmt.Errorf("read: %w", err)
	}
	c.log.Debug().Err(err).Msg("connection lost")
	c.shutdown(err, false)
}

func (c *Conn) dispatch(h header, payload []byte) {
	switch h.kind {
	case kindResponse, kindError:
		c.pmu.Lock()
		cl, ok := c.pending[h.id]
		if ok {
			delete(c.pending, h.id)
		}
		c.pmu.Unlock()
		if ok {
			c.complete(cl, h.kind, payload)
		}
		// Unknown ids are responses to calls abandoned via ctx; drop them.
	case kindRequest, kindOneWay:
		req := &Request{Method: protos.Method(h.method), ID: h.id, Payload: payload, OneWay: h.kind == kindOneWay}
		c.serve(req)
		req.Payload = nil // the buffer is about to be reused
	}
}

func (c *Conn) complete(cl *call, kind frameKind, payload []byte) {
	var err error
	if kind == kindError {
		err = decodeRemoteError(cl.method, payload)
		payload = nil
	}
	if done := cl.done; done != nil {
		putCall(cl)
		done(payload, err)
		return
	}
	if err == nil && cl.resp != nil {
		if uerr := proto.Unmarshal(payload, cl.resp); uerr != nil {
			err = fmt.Errorf("wire: decoding %s response: %w", cl.method, uerr)
		}
	}
	cl.ch <- err
}

func decodeRemoteError(m protos.Method, payload []byte) error {
	var we protos.WireError
	if err := proto.Unmarshal(payload, &we); err != nil {
		return &RemoteError{Method: m, Code: CodeInternal, Message: "undecodable error response: " + err.Error()}
	}
	return &RemoteError{Method: m, Code: we.Code, Message: we.Message}
}

func (c *Conn) serve(req *Request) {
	if c.h == nil {
		_ = c.ReplyError(req, &RemoteError{Code: CodeUnimplemented, Message: "peer serves no requests on this connection"})
		return
	}
	// A handler bug should cost one request, not the whole process (which
	// for a raylet would take every worker on the node with it).
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Str("method", req.Method.String()).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("wire handler panicked")
			_ = c.ReplyError(req, &RemoteError{Code: CodeInternal, Message: fmt.Sprintf("handler panic: %v", r)})
		}
	}()
	c.h.ServeWire(c, req)
}

// writeFailed stops the conn's writes after the socket refused one but
// leaves the socket to the reader: a peer that sent its last frames and
// closed (a process exiting) makes writes fail while those frames are
// still unread here, and replies among them must reach their calls. The
// reader ends the conn at EOF, or when the deadline finds the peer
// neither sending nor closing.
func (c *Conn) writeFailed(werr error) {
	c.wmu.Lock()
	if c.closed {
		// Close is under way and ends the conn.
		c.wmu.Unlock()
		return
	}
	c.closed = true
	c.err = closedError(fmt.Errorf("write: %w", werr))
	c.wmu.Unlock()
	if err := c.nc.SetReadDeadline(time.Now().Add(c.opts.closeFlushWait)); err != nil {
		c.shutdown(werr, false)
	}
}

// shutdown closes the conn once. graceful (local Close) lets the flusher
// drain what was queued first; failures close the socket immediately.
func (c *Conn) shutdown(cause error, graceful bool) {
	c.wmu.Lock()
	if c.ended {
		c.wmu.Unlock()
		return
	}
	c.ended = true
	if !c.closed {
		c.closed = true
		c.err = closedError(cause)
	}
	err := c.err
	c.wmu.Unlock()
	c.closing.Store(true)

	if graceful {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.closeFlushWait))
		c.kickFlusher()
		<-c.flushed
	}
	_ = c.nc.Close()
	c.kickFlusher() // an idle flusher sees closed and exits

	c.pmu.Lock()
	pend := c.pending
	c.pending = nil
	c.pmu.Unlock()
	for _, cl := range pend {
		if done := cl.done; done != nil {
			putCall(cl)
			done(nil, err)
		} else {
			cl.ch <- err
		}
	}
	close(c.done)
	if c.onClose != nil {
		c.onClose(c, err)
	}
}
