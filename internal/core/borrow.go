package core

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet"
)

// The borrower side of ownership: registrations with owners, in order per
// owner, acknowledged before a value is handed on.

// queueBorrowLocked queues a registration (or removal) for the owner at
// owner's endpoint; kickRegistrations sends the queue.
func (t *objectTable) queueBorrowLocked(owner *protos.Address, op borrowOp) {
	ep := owner.GetEndpoint()
	t.regQueue[ep] = append(t.regQueue[ep], op)
	t.regOwners[ep] = owner
	if op.add {
		t.regPending++
	}
}

// kickRegistrations sends what is queued, unless a sender is already at it.
// Additions and removals for one owner leave in the order they were queued,
// on one connection, so a removal never overtakes its addition.
func (t *objectTable) kickRegistrations() {
	t.mu.Lock()
	if t.regSending || len(t.regQueue) == 0 {
		t.mu.Unlock()
		return
	}
	t.regSending = true
	t.mu.Unlock()
	go t.sendRegistrations()
}

func (t *objectTable) sendRegistrations() {
	for {
		t.mu.Lock()
		if len(t.regQueue) == 0 {
			t.regSending = false
			t.mu.Unlock()
			return
		}
		queue, owners := t.regQueue, t.regOwners
		t.regQueue, t.regOwners = map[string][]borrowOp{}, map[string]*protos.Address{}
		t.mu.Unlock()
		for ep, ops := range queue {
			t.sendOps(owners[ep], ops)
		}
	}
}

// sendOps sends runs of additions and removals as batches, in order.
func (t *objectTable) sendOps(owner *protos.Address, ops []borrowOp) {
	type batch struct {
		add bool
		ids [][]byte
	}
	var batches []batch
	for _, op := range ops {
		if n := len(batches); n == 0 || batches[n-1].add != op.add || len(batches[n-1].ids) == raylet.MaxObjectIDsPerRequest {
			batches = append(batches, batch{add: op.add})
		}
		b := &batches[len(batches)-1]
		b.ids = append(b.ids, op.id.Bytes())
	}
	me := t.cw.node().addr
	var wg sync.WaitGroup
	wg.Add(1)
	t.cw.withPeerAt(owner, func(c *wire.Conn, err error) {
		defer wg.Done()
		for _, b := range batches {
			req := &protos.BorrowRequest{ObjectIds: b.ids, Borrower: me}
			if !b.add {
				if err == nil {
					_ = c.Notify(protos.Method_REMOVE_BORROWERS, req)
				}
				continue
			}
			n := len(b.ids)
			if err != nil {
				// The owner is gone; its objects fail when fetched.
				t.registered(n, nil)
				continue
			}
			if err := c.Go(protos.Method_ADD_BORROWERS, req, func(payload []byte, err error) {
				var reply protos.BorrowReply
				if err == nil {
					_ = unmarshalProto(payload, &reply)
				}
				t.registered(n, reply.GetUnknownIds())
			}); err != nil {
				t.registered(n, nil)
			}
		}
	})
	wg.Wait()
}

// registered accounts for n acknowledged registrations. Objects the owner
// did not know were freed before this process could borrow them: a bug in
// the protocol, or a ref revived from bytes; they are failed as lost.
func (t *objectTable) registered(n int, unknown [][]byte) {
	t.mu.Lock()
	t.regPending -= n
	if t.regPending == 0 {
		t.regDone.Broadcast()
	}
	t.mu.Unlock()
	for _, b := range unknown {
		if id, err := protos.ObjectIDFromBytes(b); err == nil {
			t.cw.log.Warn().Str("object", id.String()).Msg("borrowed an object its owner had already freed")
			t.complete(id, nil, systemError(protos.ErrorKind_ERROR_KIND_OBJECT_LOST, "", id.TaskID(), "object %s was freed by its owner before this process borrowed it", id))
		}
	}
}

// flushBorrows waits until every registration queued so far is
// acknowledged by its owner. Call it before handing on a value that this
// process decoded refs from while the sender still holds them.
func (t *objectTable) flushBorrows() {
	t.mu.Lock()
	if t.regPending == 0 {
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.kickRegistrations()
	t.mu.Lock()
	for t.regPending > 0 {
		t.regDone.Wait()
	}
	t.mu.Unlock()
}

// lendTo registers borrower with the owners of refs before a value nesting
// them leaves this process for borrower (a task's or actor call's return
// value, a stream item). It returns the refs as they travel in the reply.
func (cw *Worker) lendTo(ctx context.Context, refs []ObjectRef, borrower *protos.Address) ([]*protos.ObjectRefProto, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	out := make([]*protos.ObjectRefProto, len(refs))
	byOwner := map[string][]protos.ObjectID{}
	owners := map[string]*protos.Address{}
	for i, r := range refs {
		out[i] = r.proto()
		if cw.objects.isSelf(r.h.owner) {
			cw.objects.addBorrowers([]protos.ObjectID{r.h.id}, borrower)
			continue
		}
		ep := r.h.owner.GetEndpoint()
		byOwner[ep] = append(byOwner[ep], r.h.id)
		owners[ep] = r.h.owner
	}
	var wg sync.WaitGroup
	for ep, ids := range byOwner {
		var reqs []*protos.BorrowRequest
		inChunks(ids, func(ids []protos.ObjectID) {
			reqs = append(reqs, &protos.BorrowRequest{Borrower: borrower, ObjectIds: idBytes(ids)})
		})
		wg.Add(len(reqs))
		cw.withPeerAt(owners[ep], func(c *wire.Conn, err error) {
			for _, req := range reqs {
				if err != nil {
					wg.Done() // owner gone: the caller's Get reports it
					continue
				}
				if err := c.Go(protos.Method_ADD_BORROWERS, req, func([]byte, error) { wg.Done() }); err != nil {
					wg.Done()
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("registering the caller as borrower of %d nested refs: %w", len(refs), ctx.Err())
	}
	runtime.KeepAlive(refs)
	return out, nil
}

// serveBorrow handles ADD_BORROWERS and REMOVE_BORROWERS from borrowers.
func (cw *Worker) serveBorrow(c *wire.Conn, req *wire.Request) {
	var m protos.BorrowRequest
	if err := unmarshalProto(req.Payload, &m); err != nil {
		cw.reject(c, req, malformed(err))
		return
	}
	if err := checkBorrow(&m); err != nil {
		cw.reject(c, req, err)
		return
	}
	ids := make([]protos.ObjectID, len(m.GetObjectIds()))
	for i, b := range m.GetObjectIds() {
		ids[i] = protos.ObjectID(b)
	}
	if req.Method == protos.Method_REMOVE_BORROWERS {
		cw.objects.removeBorrowers(ids, m.GetBorrower())
		_ = c.Reply(req, &protos.BorrowReply{}) // sent one-way, but a caller gets an answer
		return
	}
	unknown := cw.objects.addBorrowers(ids, m.GetBorrower())
	reply := &protos.BorrowReply{}
	for _, id := range unknown {
		reply.UnknownIds = append(reply.UnknownIds, id.Bytes())
	}
	_ = c.Reply(req, reply)
}

// gcSoon runs a garbage collection shortly after a task ends in a worker
// that still holds borrowed refs. Refs are released by the collector, and
// an idle worker would otherwise not collect for a long time, keeping its
// owners' objects alive. While borrowed refs remain (a ref may still have
// been reachable, or waits on a child task) it collects again, backing off
// to every few seconds.
func (cw *Worker) gcSoon() {
	if !cw.isWorker || !cw.objects.hasBorrowed() || !cw.gcScheduled.CompareAndSwap(false, true) {
		return
	}
	var tick func(delay time.Duration)
	tick = func(delay time.Duration) {
		time.AfterFunc(delay, func() {
			runtime.GC()
			if cw.closed.Load() || !cw.objects.hasBorrowed() {
				cw.gcScheduled.Store(false)
				return
			}
			tick(min(2*delay, 5*time.Second))
		})
	}
	tick(20 * time.Millisecond)
}
