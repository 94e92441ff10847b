package transfer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
)

// PullerOptions configure a Puller. The zero value is usable.
type PullerOptions struct {
	Logger zerolog.Logger
	// Name identifies this node to servers (their OnServe hook), e.g. its
	// node id; empty means they see the connection's address.
	Name string
	// Streams is how many TCP connections a pull uses at once per remote
	// node; chunk i of an object goes over connection i % Streams. Zero
	// means DefaultStreams.
	Streams int
	// ChunkSize is the bytes asked for per request. Zero means
	// DefaultChunkSize.
	ChunkSize uint64
	// MaxInFlightBytes caps the total size of the pulls being written into
	// the local store at once; further pulls wait, in arrival order. Zero
	// means half the store's capacity. A pull larger than the cap runs
	// alone; one larger than the store fails at once.
	MaxInFlightBytes uint64
	// SocketBuffer is SO_RCVBUF and SO_SNDBUF of the connections, in bytes;
	// zero means DefaultSocketBuffer, negative leaves the kernel's
	// autotuning alone.
	SocketBuffer int
	// DialTimeout bounds connecting to a server. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// ChunkTimeout bounds one chunk request, reply and data included, so a
	// server that hangs fails the pull even without a deadline on its
	// context. Zero means DefaultChunkTimeout.
	ChunkTimeout time.Duration
	// Authenticator runs the handshake on each new connection before its
	// first request (*auth.Handshaker; the server's listener is an
	// auth.Listener). Nil sends requests at once.
	Authenticator Authenticator
}

// Authenticator runs the dialling side of a connection's handshake and
// returns the connection to use (the same, or wrapped in TLS).
type Authenticator interface {
	Client(ctx context.Context, nc net.Conn) (net.Conn, error)
}

// Defaults of PullerOptions and ServerOptions. Streams, chunk size and
// socket buffers are from cmd/goray-bench's object_transfer benchmark on a
// 2-core VM over loopback; see the package documentation.
const (
	DefaultStreams      = 4
	DefaultChunkSize    = 2 << 20
	DefaultSocketBuffer = 4 << 20
	DefaultDialTimeout  = 10 * time.Second
	DefaultChunkTimeout = time.Minute
)

// PullerStats counts a Puller's work.
type PullerStats struct {
	Pulls          uint64 // transfers completed, each sealing an object
	Failed         uint64 // transfers that failed or were cancelled
	Bytes          uint64 // object bytes received by completed transfers
	AdmissionWaits uint64 // transfers that had to wait for admission
	Dials          uint64 // connections opened
	InFlightBytes  uint64 // bytes of admitted transfers now
	Waiting        int    // transfers waiting for admission now
	IdleConns      int    // pooled connections now
}

// Puller pulls objects from other nodes' Servers into the local store.
// Connections to each remote are kept in a pool and reused across pulls.
type Puller struct {
	store    *objstore.Store
	opts     PullerOptions
	log      zerolog.Logger
	capacity uint64

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	ops    map[protos.ObjectID]*pullOp
	idle   map[string][]*conn // by address
	closed bool
	wg     sync.WaitGroup // transfers

	adm admission

	pulls, failed, bytes, waits, dials atomic.Uint64
}

// pullOp is one transfer, shared by every Pull of its object meanwhile.
type pullOp struct {
	done   chan struct{}
	err    error // set before done is closed
	cancel context.CancelFunc
	// Guarded by Puller.mu. The transfer is cancelled when its last
	// waiter gives up; abandoned then keeps later Pulls from joining a
	// transfer that is tearing down.
	waiters   int
	abandoned bool
}

// NewPuller returns a puller writing into store.
func NewPuller(store *objstore.Store, opts PullerOptions) *Puller {
	if opts.Streams <= 0 {
		opts.Streams = DefaultStreams
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	capacity := store.Stats().Capacity
	if opts.MaxInFlightBytes == 0 {
		opts.MaxInFlightBytes = max(capacity/2, 1)
	}
	if opts.SocketBuffer == 0 {
		opts.SocketBuffer = DefaultSocketBuffer
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.ChunkTimeout <= 0 {
		opts.ChunkTimeout = DefaultChunkTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Puller{
		store:    store,
		opts:     opts,
		log:      opts.Logger.With().Str("component", "transfer-puller").Logger(),
		capacity: capacity,
		ctx:      ctx,
		cancel:   cancel,
		ops:      make(map[protos.ObjectID]*pullOp),
		idle:     make(map[string][]*conn),
		adm:      admission{limit: opts.MaxInFlightBytes},
	}
}

// Pull copies object id from the Server at addr ("host:port") into the
// local store, owned by owner, and returns once it is sealed there. If the
// object is in the local store already it returns at once. Concurrent
// Pulls of one id share one transfer, from the address and for the owner
// of the first; it goes on while any of them still waits. When ctx ends
// the Pull returns ctx's error; if it was the last one waiting, the
// transfer stops and its partial object is deleted before Pull returns.
// Nothing half-written is ever sealed.
//
// Errors name the object and the address. A remote that does not have the
// object gives one matching objstore.ErrObjectNotFound; an object larger
// than the local store, objstore.ErrStoreFull; other refusals of the
// remote, ErrRemote and the matching objstore sentinel.
func (p *Puller) Pull(ctx context.Context, id protos.ObjectID, addr string, owner protos.WorkerID) error {
	for {
		if _, _, ok := p.store.Get(id); ok {
			return nil
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return fmt.Errorf("transfer: pull %s from %s: %w", id, addr, ErrClosed)
		}
		op := p.ops[id]
		if op == nil && p.local(id) {
			p.mu.Unlock()
			return nil
		}
		if op != nil && op.abandoned {
			// Its partial object is still in the store, so a new transfer
			// could not create its own; wait until it is gone.
			p.mu.Unlock()
			select {
			case <-op.done:
				continue
			case <-ctx.Done():
				return fmt.Errorf("transfer: pull %s from %s: %w", id, addr, context.Cause(ctx))
			}
		}
		if op == nil {
			op = p.startLocked(id, addr, owner)
		}
		op.waiters++
		p.mu.Unlock()

		select {
		case <-op.done:
			return op.err
		case <-ctx.Done():
		}
		p.mu.Lock()
		op.waiters--
		last := op.waiters == 0
		if last {
			op.abandoned = true
			op.cancel()
		}
		p.mu.Unlock()
		if last {
			// The caller may look at the store as soon as we return.
			<-op.done
			if op.err == nil {
				return nil
			}
		}
		return fmt.Errorf("transfer: pull %s from %s: %w", id, addr, context.Cause(ctx))
	}
}

func (p *Puller) startLocked(id protos.ObjectID, addr string, owner protos.WorkerID) *pullOp {
	ctx, cancel := context.WithCancel(p.ctx)
	op := &pullOp{done: make(chan struct{}), cancel: cancel}
	p.ops[id] = op
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		start := time.Now()
		size, err := p.transfer(ctx, id, addr, owner)
		if err != nil {
			switch {
			case p.ctx.Err() != nil:
				err = errors.Join(ErrClosed, err)
			case ctx.Err() != nil:
				err = context.Cause(ctx)
			}
			err = fmt.Errorf("transfer: pull %s from %s: %w", id, addr, err)
			p.failed.Add(1)
			p.log.Debug().Err(err).Msg("pull failed")
		} else {
			p.pulls.Add(1)
			p.bytes.Add(size)
			d := time.Since(start)
			p.log.Debug().Stringer("object", id).Str("from", addr).Uint64("bytes", size).
				Dur("took", d).Float64("GB_per_s", float64(size)/d.Seconds()/1e9).Msg("pulled")
		}
		p.mu.Lock()
		delete(p.ops, id)
		op.err = err
		p.mu.Unlock()
		cancel()
		close(op.done)
	}()
	return op
}

// local reports whether id is sealed in the local store, in memory or
// spilled. While a transfer of id runs it is in the store unsealed, so
// joining pulls check for the transfer first and skip the scan below.
func (p *Puller) local(id protos.ObjectID) bool {
	if _, _, ok := p.store.Get(id); ok {
		return true
	}
	if !p.store.Contains(id) {
		return false
	}
	// Spilled, or still being written by its creator: only the table says
	// which. Rare enough for a scan.
	for _, o := range p.store.Objects() {
		if o.ID == id {
			return o.Sealed
		}
	}
	return false
}

// Close cancels the pulls in flight, waits until their partial objects are
// deleted and closes the pooled connections. Pulls fail with ErrClosed from
// then on. Calling it again is a no-op.
func (p *Puller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.close()
		}
	}
	return nil
}

// Stats returns the puller's counters.
func (p *Puller) Stats() PullerStats {
	inFlight, waiting := p.adm.stats()
	p.mu.Lock()
	idle := 0
	for _, cs := range p.idle {
		idle += len(cs)
	}
	p.mu.Unlock()
	return PullerStats{
		Pulls:          p.pulls.Load(),
		Failed:         p.failed.Load(),
		Bytes:          p.bytes.Load(),
		AdmissionWaits: p.waits.Load(),
		Dials:          p.dials.Load(),
		InFlightBytes:  inFlight,
		Waiting:        waiting,
		IdleConns:      idle,
	}
}

// transfer runs one pull. The first request, for chunk 0, also learns the
// size; its reply header arrives before its data, so if the pull is
// admitted at once the data goes straight into the new object, and
// otherwise it is drained and fetched again after the wait, since holding a
// server's connection through an admission wait of unknown length would
// keep the object pinned there.
func (p *Puller) transfer(ctx context.Context, id protos.ObjectID, addr string, owner protos.WorkerID) (uint64, error) {
	req := &protos.PullChunkRequest{ObjectId: id[:], Length: p.opts.ChunkSize, Puller: p.opts.Name}
	var reply protos.PullChunkReply
	c, err := p.request(ctx, nil, addr, req, &reply)
	if err != nil {
		return 0, err
	}
	if reply.ErrorCode != protos.TransferErrorCode_TRANSFER_OK {
		p.put(c)
		return 0, remoteError(addr, id, &reply)
	}
	size := reply.ObjectSize
	if err := checkReply(&reply, req, size); err != nil {
		c.close()
		return 0, err
	}
	pending := reply.DataLength
	drain := func() error {
		if err := c.discard(ctx, pending); err != nil {
			c.close()
			return err
		}
		p.put(c)
		c, pending = nil, 0
		return nil
	}
	if size > p.capacity {
		if err := drain(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("object of %d bytes does not fit in the local store of %d bytes: %w", size, p.capacity, objstore.ErrStoreFull)
	}
	if !p.adm.tryAcquire(size) {
		if err := drain(); err != nil {
			return 0, p.ctxErr(ctx, err)
		}
		p.waits.Add(1)
		if err := p.adm.acquire(ctx, size); err != nil {
			return 0, err
		}
	}
	defer p.adm.release(size)

	off, err := p.store.CreateOwned(id, size, owner)
	if err != nil {
		if c != nil {
			if derr := drain(); derr != nil {
				err = errors.Join(err, derr)
			}
		}
		if errors.Is(err, objstore.ErrObjectExists) && p.local(id) {
			return 0, nil // put or pulled by someone else meanwhile
		}
		return 0, err
	}
	sealed := false
	defer func() {
		if !sealed {
			// We created it and nobody else writes to it, so deleting
			// the unsealed object is ours to do; its block is free at once.
			_ = p.store.Delete(id)
		}
	}()
	if err := p.fetch(ctx, addr, id, size, off, c, pending); err != nil {
		return 0, err
	}
	if err := p.store.Seal(id); err != nil {
		return 0, err
	}
	sealed = true
	return size, nil
}

// fetch copies the object's chunks into the block at off over up to
// Streams connections at once. c, if not nil, is the connection whose
// reply to chunk 0 has its pending data bytes still to be read.
func (p *Puller) fetch(ctx context.Context, addr string, id protos.ObjectID, size, off uint64, c *conn, pending uint64) error {
	chunk := p.opts.ChunkSize
	n := int((size + chunk - 1) / chunk)
	if n == 0 {
		// An empty object: the first reply carried everything.
		if c != nil {
			p.put(c)
		}
		return nil
	}
	streams := min(p.opts.Streams, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error // the failure that stopped the others
	)
	for s := range streams {
		sc, pend := (*conn)(nil), uint64(0)
		if s == 0 {
			sc, pend = c, pending
		}
		wg.Go(func() {
			if err := p.stream(ctx, addr, id, size, off, s, streams, sc, pend); err != nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
				cancel(err)
			}
		})
	}
	wg.Wait()
	return first
}

// stream fetches chunks s, s+streams, ... on one connection. c, if not
// nil, arrives with the data of chunk 0 (pending bytes) still to read.
func (p *Puller) stream(ctx context.Context, addr string, id protos.ObjectID, size, off uint64, s, streams int, c *conn, pending uint64) (err error) {
	defer func() {
		if c == nil {
			return
		}
		// A connection is reusable only if it stopped between replies; a
		// cancelled or failed one may have a reply half read.
		if err == nil || errors.Is(err, ErrRemote) {
			p.put(c)
		} else {
			c.close()
		}
	}()
	seg := p.store.Segment()
	chunk := p.opts.ChunkSize
	n := (size + chunk - 1) / chunk
	req := &protos.PullChunkRequest{ObjectId: id[:], Puller: p.opts.Name}
	var reply protos.PullChunkReply
	for i := uint64(s); i < n; i += uint64(streams) {
		lo := i * chunk
		hi := min(lo+chunk, size)
		// Chunk 0's reply may have come with c already.
		if c == nil || i > 0 || pending == 0 {
			req.Offset, req.Length = lo, hi-lo
			if c, err = p.request(ctx, c, addr, req, &reply); err != nil {
				return err
			}
			if reply.ErrorCode != protos.TransferErrorCode_TRANSFER_OK {
				return remoteError(addr, id, &reply)
			}
			if err := checkReply(&reply, req, size); err != nil {
				return err
			}
		}
		// Faulting the pages in one call beats a fault per page inside
		// the socket read, and reports a full tmpfs as an error.
		if err := seg.Prefault(off+lo, hi-lo); err != nil {
			return err
		}
		if err := c.readData(ctx, p.opts.ChunkTimeout, seg.Slice(off+lo, hi-lo)); err != nil {
			return p.ctxErr(ctx, err)
		}
	}
	return nil
}

// request sends req on c, or on a pooled or new connection to addr if c
// is nil, and reads the reply's header; the data, if any, is left for
// the caller. A pooled connection the server closed while it sat idle
// fails before any reply byte; then the request is retried once on a new
// connection, since chunk requests are idempotent. On error the returned
// connection is nil and the one used is closed.
func (p *Puller) request(ctx context.Context, c *conn, addr string, req *protos.PullChunkRequest, reply *protos.PullChunkReply) (*conn, error) {
	var err error
	if c == nil {
		if c, err = p.get(ctx, addr); err != nil {
			return nil, err
		}
	}
	for {
		err = c.roundTrip(ctx, p.opts.ChunkTimeout, req, reply)
		if err == nil {
			return c, nil
		}
		retry := c.reused && !c.answered && ctx.Err() == nil
		c.close()
		if !retry {
			return nil, p.ctxErr(ctx, err)
		}
		if c, err = p.dial(ctx, addr); err != nil {
			return nil, err
		}
	}
}

// ctxErr prefers the reason a context ended over the I/O error its
// cancellation caused.
func (p *Puller) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// get takes an idle connection to addr from the pool or dials one.
func (p *Puller) get(ctx context.Context, addr string) (*conn, error) {
	p.mu.Lock()
	if cs := p.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		p.idle[addr] = cs[:len(cs)-1]
		p.mu.Unlock()
		c.reused, c.answered = true, false
		return c, nil
	}
	p.mu.Unlock()
	return p.dial(ctx, addr)
}

func (p *Puller) dial(ctx context.Context, addr string) (*conn, error) {
	c, err := dial(ctx, addr, p.opts.DialTimeout, p.opts.SocketBuffer, p.opts.Authenticator)
	if err != nil {
		return nil, p.ctxErr(ctx, err)
	}
	p.dials.Add(1)
	return c, nil
}

// put returns a connection, between replies, to the pool. The pool keeps
// Streams connections per remote, enough for one pull at full width; more
// come and go with concurrent pulls.
func (p *Puller) put(c *conn) {
	if c.broken || c.nc.SetDeadline(time.Time{}) != nil {
		c.close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle[c.addr]) >= p.opts.Streams {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
	p.mu.Unlock()
}

func remoteError(addr string, id protos.ObjectID, reply *protos.PullChunkReply) error {
	return &RemoteError{Addr: addr, ID: id, Code: reply.ErrorCode, Message: reply.ErrorMessage}
}

// checkReply verifies that a successful reply answers req for an object of
// size bytes.
func checkReply(reply *protos.PullChunkReply, req *protos.PullChunkRequest, size uint64) error {
	want := uint64(0)
	if req.Offset < size {
		want = min(req.Length, size-req.Offset)
	}
	if reply.ObjectSize != size || reply.Offset != req.Offset || reply.DataLength != want {
		return fmt.Errorf("reply (size %d, offset %d, %d bytes) to a request for [%d, +%d) of an object of %d bytes: %w",
			reply.ObjectSize, reply.Offset, reply.DataLength, req.Offset, req.Length, size, ErrProtocol)
	}
	return nil
}
