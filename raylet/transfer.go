package raylet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/objstore/transfer"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Objects across nodes. Each raylet runs an object transfer server (package
// objstore/transfer) on NodeIP and a puller: a process that needs an object
// stored on another node asks its raylet to PULL_OBJECT it, the raylet pulls
// it in chunks over parallel streams into the local store (admission keeps
// pulls from overfilling it), and the process then reads the local copy
// like any other. The owner's record of the object names the node holding
// the primary copy (ObjectData.node_id): Ray's owner-based object
// directory.
//
// Copies are freed with the primary: the raylet remembers which of its
// objects it served, and when one of them is deleted (its owner freed it
// or died) it announces the ids (Config.PublishFree, a NATS subject) so the
// raylets holding copies delete theirs (FreeCopies).

type transferState struct {
	server   *transfer.Server
	puller   *transfer.Puller
	listener net.Listener
	addr     string

	mu     sync.Mutex
	served map[protos.ObjectID]struct{}
}

func (r *Raylet) startTransfer() error {
	l, err := net.Listen("tcp", net.JoinHostPort(r.cfg.NodeIP, "0"))
	if err != nil {
		return err
	}
	t := &transferState{listener: l, addr: l.Addr().String(), served: map[protos.ObjectID]struct{}{}}
	t.server = transfer.NewServer(r.store, transfer.ServerOptions{
		Logger: r.cfg.Logger,
		OnServe: func(id protos.ObjectID, _ string) {
			t.mu.Lock()
			t.served[id] = struct{}{}
			t.mu.Unlock()
		},
	})
	t.puller = transfer.NewPuller(r.store, transfer.PullerOptions{Logger: r.cfg.Logger, Name: r.cfg.NodeID.String(),
		Authenticator: r.cfg.Credentials.Handshaker(auth.LabelTransfer)})
	sl := r.secure(l, auth.LabelTransfer)
	go func() { _ = t.server.Serve(sl) }()
	r.transfer = t
	return nil
}

func (r *Raylet) stopTransfer() {
	if t := r.transfer; t != nil {
		_ = t.puller.Close()
		_ = t.server.Close()
	}
}

func (r *Raylet) transferAddr() string {
	if r.transfer == nil {
		return ""
	}
	return r.transfer.addr
}

// pullTimeout bounds a pull that makes no progress at all.
const pullTimeout = 10 * time.Minute

// servePull handles PULL_OBJECT from a process on the node.
func (r *Raylet) servePull(c *wire.Conn, req *wire.Request) {
	var m protos.PullObjectRequest
	if !r.decode(c, req, &m) {
		return
	}
	id, node, owner, err := checkPullObject(&m, r.seg.Capacity())
	if err != nil {
		r.reject(c, req, err)
		return
	}
	go func() {
		err := r.pull(id, node, owner)
		switch {
		case err == nil:
			_ = c.Reply(req, &protos.PullObjectReply{})
		case errors.Is(err, objstore.ErrObjectNotFound):
			_ = c.ReplyError(req, wire.NewError("not_found", "%v", err))
		case errors.Is(err, errNodeUnknown):
			_ = c.ReplyError(req, wire.NewError("node_dead", "%v", err))
		default:
			_ = c.ReplyError(req, wire.NewError(storeErrCode(err), "%v", err))
		}
	}()
}

var errNodeUnknown = errors.New("node is not in the cluster view")

// pull copies object id from node's store into this node's.
func (r *Raylet) pull(id protos.ObjectID, node protos.NodeID, owner protos.WorkerID) error {
	if node == r.cfg.NodeID || r.hasCopy(id) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	go func() {
		select {
		case <-r.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := suspectRetryMin
	warned := false
	for {
		v, ok := r.peerAddrs.Load(node)
		if !ok || v.(peerAddress).transfer == "" {
			return fmt.Errorf("pull object %s: %w: node %s (dead, or not joined yet)", id, errNodeUnknown, node.Short())
		}
		err := r.transfer.puller.Pull(ctx, id, v.(peerAddress).transfer, owner)
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			return err
		}
		// The holding node does not answer but is not declared dead: it
		// may be dying, or its link may be down for a moment. Failing now
		// would fail the task needing the object, when the GCS will soon
		// either declare the node dead (the pull then fails with
		// node_dead, and the object's owner rebuilds it) or the node
		// answers again.
		if !warned {
			warned = true
			r.cfg.Logger.Warn().Stringer("object", id).Str("node", node.Short()).Err(err).Msg("node holding the object does not answer: waiting until it answers or is declared dead")
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, suspectRetryMax)
	}
}

// hasCopy reports whether the store holds a complete copy of id, in memory
// or spilled. A copy still being written (a pull of it under way) does not
// count: its reader would find no sealed object; the puller has it wait
// for that pull instead.
func (r *Raylet) hasCopy(id protos.ObjectID) bool {
	if _, _, ok := r.store.Get(id); ok {
		return true
	}
	if !r.store.Contains(id) {
		return false
	}
	// Spilled, or being written: only the table says which. Rare enough
	// for a scan.
	for _, o := range r.store.Objects() {
		if o.ID == id {
			return o.Sealed
		}
	}
	return false
}

// The pause between pulls from a node that does not answer.
const (
	suspectRetryMin = 50 * time.Millisecond
	suspectRetryMax = time.Second
)

// unreachable reports whether a pull failed because the serving node could
// not be reached or dropped the connection, rather than because it answered
// (not found, store full) or this node's puller closed.
func unreachable(err error) bool {
	if errors.Is(err, transfer.ErrRemote) || errors.Is(err, transfer.ErrClosed) || errors.Is(err, transfer.ErrProtocol) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ObjectsDeleted is announceFreed for objects an in-process client (the
// embedded cluster's driver) deleted from the store directly.
func (r *Raylet) ObjectsDeleted(ids []protos.ObjectID) { r.announceFreed(ids) }

// announceFreed tells the other nodes to drop their copies of objects this
// node served and has now deleted.
func (r *Raylet) announceFreed(ids []protos.ObjectID) {
	t := r.transfer
	if t == nil || r.cfg.PublishFree == nil || len(ids) == 0 {
		return
	}
	var freed []protos.ObjectID
	t.mu.Lock()
	for _, id := range ids {
		if _, ok := t.served[id]; ok {
			delete(t.served, id)
			freed = append(freed, id)
		}
	}
	t.mu.Unlock()
	if len(freed) > 0 {
		r.cfg.PublishFree(freed)
	}
}

// FreeCopies deletes this node's copies of objects freed on the node that
// holds their primary copy.
func (r *Raylet) FreeCopies(ids []protos.ObjectID) {
	for _, id := range ids {
		_ = r.store.Delete(id)
	}
}

// OwnerGone deletes this node's objects owned by a process that exited on
// another node (its raylet announces it).
func (r *Raylet) OwnerGone(owner protos.WorkerID) {
	if owner.IsZero() {
		return
	}
	if ids := r.store.DeleteOwnedBy(owner); len(ids) > 0 {
		r.announceFreed(ids)
	}
}
