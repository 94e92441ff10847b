package core

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/protos"
)

// Lineage reconstruction (Ray's): an object made by a task and stored on a
// node that dies is made again by re-running the task, within the task's
// retries. The owner keeps, with each such object it owns, what it needs to
// submit the task again (its lineage); when it learns that a node died, it
// resubmits the tasks whose results were stored there, and the objects are
// pending again until they finish, so a Get waits for the new value rather
// than failing. A Put object has no lineage: it is lost with its node
// (ErrObjectLost).
//
// The lineage holds the task's ref arguments alive while the result lives
// (Ray's lineage pinning): a re-run resolves them again, waiting for those
// being rebuilt too.

// watchNodes has this process hear of dead nodes (once): drivers from the
// start, workers when they first own a stored task result.
func (cw *Worker) watchNodes() error {
	cw.nodeWatch.Do(func() {
		gc, err := cw.GCS()
		if err != nil {
			cw.nodeWatchErr = err
			return
		}
		_, cw.nodeWatchErr = gc.NATS().Subscribe(gcs.SubjectNodeEvents, func(m *nats.Msg) {
			info := &protos.NodeInfo{}
			if gcs.DecodeEvent(m.Data, info) == nil && info.GetState() == protos.NodeInfo_DEAD {
				go cw.nodeDied(protos.MustUniqueID(info.GetNodeId()))
			}
		})
		// Deaths announced while NATS was away (the head restarting)
		// were missed: look at the node table when it comes back.
		gc.OnReconnect(func() {
			ctx, cancel := context.WithTimeout(context.Background(), gcs.DefaultRequestTimeout)
			defer cancel()
			nodes, err := gc.ListNodes(ctx)
			if err != nil {
				return
			}
			for _, n := range nodes {
				if n.GetState() == protos.NodeInfo_DEAD {
					cw.nodeDied(protos.MustUniqueID(n.GetNodeId()))
				}
			}
		})
	})
	if cw.nodeWatchErr != nil {
		return fmt.Errorf("subscribe to node events: %w", cw.nodeWatchErr)
	}
	return nil
}

// lineage is how to make an owned stored object again.
type lineage struct {
	// argRefs are the task's ref arguments, kept alive (as if by a pending
	// task) while the lineage lives, so a re-run finds them, rebuilt too
	// if they were lost with the same node.
	argRefs     []protos.ObjectID
	spec        *protos.TaskSpec
	key         string
	retriesLeft int
	retryOn     func(error) bool
	strategy    *protos.SchedulingStrategy
}

// lineageOf records t's lineage for its result, if the result is stored
// and t has retries left.
func lineageOf(t *pendingTask, data *protos.ObjectData) *lineage {
	if !data.GetInStore() || t.retriesLeft == 0 {
		return nil
	}
	return &lineage{argRefs: t.argRefs, spec: t.spec, key: t.key, retriesLeft: t.retriesLeft, retryOn: t.retryOn, strategy: t.strategy}
}

// releaseLineageLocked drops the holds a lineage has on its arguments.
func (t *objectTable) releaseLineageLocked(lin *lineage, rel *release) {
	for _, id := range lin.argRefs {
		if e, ok := t.m[id]; ok {
			e.submittedRefs--
			t.maybeFreeLocked(id, e, rel)
		}
	}
}

// rebuild re-runs the task that made id, an object this process owns whose
// node is gone, and waits for the new value's data; ok is false if id has
// no lineage here.
func (cw *Worker) rebuild(ctx context.Context, id protos.ObjectID, node protos.NodeID) (*protos.ObjectData, bool) {
	t := cw.objects
	t.mu.Lock()
	e, found := t.m[id]
	can := found && e.owned && (e.state == objPending || e.lineage != nil)
	t.mu.Unlock()
	if !can {
		return nil, false
	}
	cw.rerun(func(oid protos.ObjectID, _ protos.NodeID) bool { return oid == id }, node)
	if _, err := cw.wait(ctx, []protos.ObjectID{id}, 1, 0, true); err != nil {
		return nil, false
	}
	st, data, _, _ := t.result(id)
	if st != objReady || protos.MustUniqueID(data.GetNodeId()) == node {
		return nil, false
	}
	return data, true
}

// relocateFor bounds how long a borrower keeps asking the owner of an
// object lost with its node for a new copy: the owner hears of the death
// from the GCS within a second or two and then either rebuilds the object
// (its record goes pending) or cannot (no lineage), when it keeps naming
// the dead node.
const relocateFor = 10 * time.Second

// relocate asks the owner of a borrowed object that was on node, now
// unreachable or dead, where the object is now, waiting while the owner
// rebuilds it. It reports false if this process owns the object, the owner
// is unknown, or the owner still names node after relocateFor.
func (cw *Worker) relocate(ctx context.Context, id protos.ObjectID, node protos.NodeID, owner *protos.Address) (*protos.ObjectData, bool) {
	if owner == nil {
		owner = cw.objects.ownerOf(id)
	}
	if owner == nil || protos.MustUniqueID(owner.GetWorkerId()) == cw.workerID {
		return nil, false
	}
	// The owner may need this node's CPU to rebuild the object (with
	// this very task holding it): lend it while waiting, as Get does.
	if ti := taskInfoFrom(ctx); ti != nil && cw.isWorker {
		cw.setBlocked(ti, true)
		defer cw.setBlocked(ti, false)
	}
	ctx, cancel := context.WithTimeout(ctx, relocateFor)
	defer cancel()
	pause := 50 * time.Millisecond
	for {
		d, err := cw.askOwner(ctx, id, owner)
		if err != nil || d.GetError() != nil {
			return nil, false
		}
		if !d.GetInStore() || protos.MustUniqueID(d.GetNodeId()) != node {
			return d, true
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, false
		}
		pause = min(2*pause, time.Second)
	}
}

// askOwner asks owner for the object's value or location (GET_OBJECT,
// answered once the object is ready).
func (cw *Worker) askOwner(ctx context.Context, id protos.ObjectID, owner *protos.Address) (*protos.ObjectData, error) {
	type answer struct {
		d   *protos.ObjectData
		err error
	}
	ch := make(chan answer, 1)
	cw.getFromOwner(id, owner, func(d *protos.ObjectData, err error) { ch <- answer{d, err} })
	select {
	case a := <-ch:
		return a.d, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// nodeDied resubmits the tasks whose results this process owns and that
// were stored on node.
func (cw *Worker) nodeDied(node protos.NodeID) {
	if node == cw.node().id {
		return
	}
	cw.rerun(func(_ protos.ObjectID, at protos.NodeID) bool { return at == node }, node)
}

// rerun resubmits the tasks that made the owned stored objects for which
// lost(id, node holding it) is true; dead is the node named in the log.
func (cw *Worker) rerun(lost func(protos.ObjectID, protos.NodeID) bool, dead protos.NodeID) {
	if cw.closed.Load() {
		return
	}
	t := cw.objects
	var rel release
	var redo []*pendingTask
	t.mu.Lock()
	for id, e := range t.m {
		if !e.owned || e.state != objReady || e.lineage == nil || !e.data.GetInStore() || !lost(id, protos.MustUniqueID(e.data.GetNodeId())) {
			continue
		}
		lin := e.lineage
		e.state, e.data, e.lineage = objPending, nil, nil
		t.releaseContainedLocked(e.contains, &rel)
		e.contains = nil
		spec := proto.CloneOf(lin.spec)
		spec.Attempt++
		// Its new attempt is reported by resolve.
		left := lin.retriesLeft
		if left > 0 {
			left--
		}
		redo = append(redo, &pendingTask{spec: spec, key: lin.key, returnID: id, retriesLeft: left, retryOn: lin.retryOn, strategy: lin.strategy, argRefs: lin.argRefs})
	}
	t.mu.Unlock()
	rel.run(t)
	if len(redo) == 0 {
		return
	}
	cw.log.Warn().Str("node", dead.Short()).Int("objects", len(redo)).Msg("objects lost with their node: re-running the tasks that made them")
	s := cw.sub
	for _, p := range redo {
		s.mu.Lock()
		s.tasks[protos.MustUniqueID(p.spec.GetTaskId())] = p
		s.mu.Unlock()
		s.resolve(p)
	}
}
