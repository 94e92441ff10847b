package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// placer is the network side of actor scheduling: leases from raylets and
// the actor's worker. The actor manager calls it only from goroutines of
// its own, never from its mailbox, and gets the results back as messages.
// Every method may block; all are safe for concurrent use.
type placer interface {
	// lease asks the raylet of node for a dedicated worker and waits until
	// it is granted (an infeasible request waits in the raylet) or fails.
	lease(ctx context.Context, node *protos.NodeInfo, req *protos.RequestWorkerLeaseRequest) (*protos.RequestWorkerLeaseReply, error)
	// create connects to the leased worker and runs the actor's
	// constructor there. exited is called (from the connection's reader)
	// when the worker reports on that connection that the actor exited
	// itself. A non-nil error means the worker could not be reached or
	// failed the request: the connection, if any, is closed and nil.
	create(ctx context.Context, worker *protos.Address, req *protos.CreateActorRequest, exited func(reason string)) (actorConn, *protos.CreateActorReply, error)
	// attach connects to the worker that a record restored by a restarted
	// GCS says hosts an actor, and checks that it still hosts that
	// incarnation (ATTACH_ACTOR); exited as for create. node is the
	// worker's node as the node table has it.
	attach(ctx context.Context, node *protos.NodeInfo, worker *protos.Address, req *protos.AttachActorRequest, exited func(reason string)) (actorConn, error)
	// started tells the raylet the actor runs (NOTIFY_ACTOR_STARTED).
	started(ctx context.Context, node *protos.NodeInfo, lease []byte) error
	// kill asks the actor's worker to stop it; the worker answers, then
	// exits.
	kill(ctx context.Context, conn actorConn, req *protos.KillActorRequest) error
	// returnLease gives the lease back; the raylet kills the worker.
	returnLease(ctx context.Context, node *protos.NodeInfo, lease []byte) error
	// close drops every connection; blocked calls fail.
	close()

	// Packed hosts (see actor_packed.go): one worker, one connection, many
	// actors.

	// connectHost dials a packed host's worker. exited is called (from the
	// connection's reader) when the worker reports on it that one of its
	// actors exited itself.
	connectHost(ctx context.Context, worker *protos.Address, exited func(actor protos.UniqueID, reason string)) (actorConn, error)
	// createOn sends CREATE_ACTOR on a host's connection without waiting;
	// done gets the outcome, once, possibly on the connection's reader
	// (it must not block). createOn itself never blocks.
	createOn(conn actorConn, req *protos.CreateActorRequest, done func(*protos.CreateActorReply, error))
	// killOn sends KILL_ACTOR on a host's connection without waiting, so
	// it reaches the worker before anything sent on the connection after
	// it (a re-creation of the same actor); done as for createOn.
	killOn(conn actorConn, req *protos.KillActorRequest, done func(error))
}

// actorConn is the GCS's connection to an actor's worker: it closes when
// the worker's process dies.
type actorConn interface {
	Done() <-chan struct{}
	Close() error
}

// wirePlacer is the placer over goray's wire transport: one cached
// connection per raylet, one connection per actor incarnation, and one per
// packed host for all its actors (actor_packed_wire.go).
type wirePlacer struct {
	log zerolog.Logger

	mu      sync.Mutex
	closed  bool
	raylets map[protos.NodeID]*wire.Conn
	workers map[*wire.Conn]struct{}
	// remote marks the nodes reached over TCP: all but the head, whose
	// raylet and workers run on the GCS's machine and are faster to reach
	// on their unix sockets.
	remote map[protos.NodeID]bool
	auth   wire.Authenticator
}

func newWirePlacer(log zerolog.Logger, auth wire.Authenticator) *wirePlacer {
	return &wirePlacer{log: log, auth: auth, raylets: map[protos.NodeID]*wire.Conn{}, workers: map[*wire.Conn]struct{}{}, remote: map[protos.NodeID]bool{}}
}

// dial connects to a raylet or worker, authenticated.
func (p *wirePlacer) dial(ctx context.Context, endpoint string, h wire.Handler) (*wire.Conn, error) {
	return wire.Dial(ctx, endpoint, h, wire.WithLogger(p.log), wire.WithAuthenticator(p.auth))
}

const dialTimeout = 5 * time.Second

// workerEndpoint is where the GCS dials a worker: its unix socket on the
// head, its TCP endpoint elsewhere.
func (p *wirePlacer) workerEndpoint(w *protos.Address) string {
	p.mu.Lock()
	remote := p.remote[protos.MustUniqueID(w.GetNodeId())]
	p.mu.Unlock()
	if remote && w.GetTcpEndpoint() != "" {
		return w.GetTcpEndpoint()
	}
	return w.GetEndpoint()
}

// raylet returns the cached connection to node's raylet, dialing it if
// there is none, it closed, or the node moved to another endpoint.
func (p *wirePlacer) raylet(ctx context.Context, node *protos.NodeInfo) (*wire.Conn, error) {
	id := protos.MustUniqueID(node.GetNodeId())
	ep := node.GetRayletEndpoint()
	remote := !node.GetIsHead() && node.GetRayletTcpEndpoint() != ""
	if remote {
		ep = node.GetRayletTcpEndpoint()
	}
	p.mu.Lock()
	p.remote[id] = remote
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if c := p.raylets[id]; c != nil && c.Err() == nil && c.RemoteEndpoint() == ep {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := p.dial(dctx, ep, nil)
	if err != nil {
		return nil, fmt.Errorf("raylet of node %s: %w", id.Short(), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, ErrClosed
	}
	if old := p.raylets[id]; old != nil && old.Err() == nil && old.RemoteEndpoint() == ep {
		// Another goroutine dialed meanwhile: keep one connection, since
		// the raylet ties leases to the connection that asked for them.
		_ = c.Close()
		return old, nil
	}
	if old := p.raylets[id]; old != nil {
		_ = old.Close()
	}
	p.raylets[id] = c
	return c, nil
}

func (p *wirePlacer) lease(ctx context.Context, node *protos.NodeInfo, req *protos.RequestWorkerLeaseRequest) (*protos.RequestWorkerLeaseReply, error) {
	c, err := p.raylet(ctx, node)
	if err != nil {
		return nil, err
	}
	rep := &protos.RequestWorkerLeaseReply{}
	if err := c.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, req, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

func (p *wirePlacer) create(ctx context.Context, worker *protos.Address, req *protos.CreateActorRequest, exited func(reason string)) (actorConn, *protos.CreateActorReply, error) {
	c, err := p.dialActor(ctx, p.workerEndpoint(worker), req.GetSpec().GetActorId(), exited)
	if err != nil {
		return nil, nil, err
	}
	rep := &protos.CreateActorReply{}
	if err := c.Call(ctx, protos.Method_CREATE_ACTOR, req, rep); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	return c, rep, nil
}

func (p *wirePlacer) attach(ctx context.Context, node *protos.NodeInfo, worker *protos.Address, req *protos.AttachActorRequest, exited func(reason string)) (actorConn, error) {
	ep := worker.GetEndpoint()
	remote := !node.GetIsHead() && worker.GetTcpEndpoint() != ""
	if remote {
		ep = worker.GetTcpEndpoint()
	}
	p.mu.Lock()
	p.remote[protos.MustUniqueID(node.GetNodeId())] = remote
	p.mu.Unlock()
	c, err := p.dialActor(ctx, ep, req.GetActorId(), exited)
	if err != nil {
		return nil, err
	}
	if err := c.Call(ctx, protos.Method_ATTACH_ACTOR, req, &protos.AttachActorReply{}); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// dialActor connects to an actor's worker, serving the ACTOR_EXITED it
// may send on the connection.
func (p *wirePlacer) dialActor(ctx context.Context, endpoint string, actorID []byte, exited func(reason string)) (*wire.Conn, error) {
	h := wire.HandlerFunc(func(c *wire.Conn, r *wire.Request) {
		if r.Method != protos.Method_ACTOR_EXITED {
			if !r.OneWay {
				_ = c.ReplyError(r, wire.NewError(wire.CodeUnimplemented, "the GCS serves only ACTOR_EXITED on an actor's connection, not %v", r.Method))
			}
			return
		}
		m := &protos.ActorExitedRequest{}
		if err := proto.Unmarshal(r.Payload, m); err != nil {
			if !r.OneWay {
				_ = c.ReplyError(r, wire.NewError("malformed", "ACTOR_EXITED: %v", err))
			}
			return
		}
		if id := m.GetActorId(); len(id) > 0 && !bytes.Equal(id, actorID) {
			if !r.OneWay {
				_ = c.ReplyError(r, wire.NewError("invalid", "ACTOR_EXITED for actor %x on the connection of actor %x", id, actorID))
			}
			return
		}
		exited(m.GetReason())
		if !r.OneWay {
			_ = c.Reply(r, &protos.ActorExitedReply{})
		}
	})
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, err := p.dial(dctx, endpoint, h)
	cancel()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		return nil, ErrClosed
	}
	p.workers[c] = struct{}{}
	p.mu.Unlock()
	go func() {
		<-c.Done()
		p.mu.Lock()
		delete(p.workers, c)
		p.mu.Unlock()
	}()
	return c, nil
}

func (p *wirePlacer) started(ctx context.Context, node *protos.NodeInfo, lease []byte) error {
	c, err := p.raylet(ctx, node)
	if err != nil {
		return err
	}
	return c.Call(ctx, protos.Method_NOTIFY_ACTOR_STARTED, &protos.NotifyActorStartedRequest{LeaseId: lease}, &protos.NotifyActorStartedReply{})
}

func (p *wirePlacer) kill(ctx context.Context, conn actorConn, req *protos.KillActorRequest) error {
	c, ok := conn.(*wire.Conn)
	if !ok {
		return fmt.Errorf("%w: actor connection of type %T", ErrInternal, conn)
	}
	return c.Call(ctx, protos.Method_KILL_ACTOR, req, &protos.KillActorReply{})
}

func (p *wirePlacer) returnLease(ctx context.Context, node *protos.NodeInfo, lease []byte) error {
	c, err := p.raylet(ctx, node)
	if err != nil {
		return err
	}
	return c.Call(ctx, protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: lease, DisconnectWorker: true}, &protos.ReturnWorkerLeaseReply{})
}

func (p *wirePlacer) prepareBundles(ctx context.Context, node *protos.NodeInfo, req *protos.PrepareBundlesRequest) error {
	c, err := p.raylet(ctx, node)
	if err != nil {
		return err
	}
	return c.Call(ctx, protos.Method_PREPARE_BUNDLES, req, &protos.PrepareBundlesReply{})
}

func (p *wirePlacer) commitBundles(ctx context.Context, node *protos.NodeInfo, req *protos.CommitBundlesRequest) error {
	c, err := p.raylet(ctx, node)
	if err != nil {
		return err
	}
	return c.Call(ctx, protos.Method_COMMIT_BUNDLES, req, &protos.CommitBundlesReply{})
}

func (p *wirePlacer) cancelBundles(ctx context.Context, node *protos.NodeInfo, req *protos.CancelBundlesRequest) error {
	c, err := p.raylet(ctx, node)
	if err != nil {
		return err
	}
	return c.Call(ctx, protos.Method_CANCEL_BUNDLES, req, &protos.CancelBundlesReply{})
}

func (p *wirePlacer) close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*wire.Conn, 0, len(p.raylets)+len(p.workers))
	for _, c := range p.raylets {
		conns = append(conns, c)
	}
	for c := range p.workers {
		conns = append(conns, c)
	}
	p.raylets, p.workers = map[protos.NodeID]*wire.Conn{}, map[*wire.Conn]struct{}{}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// remoteCode is the code of a raylet's or worker's error reply, or "" for
// transport failures (dial errors, closed connections, timeouts).
func remoteCode(err error) string {
	var re *wire.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}
