package sdk

import (
	"google.golang.org/protobuf/proto"

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
// Arguments are kept by value in the task spec; an argument that was
// itself stored on a node that died is not rebuilt first, and the re-run
// then fails with ErrObjectLost.

// lineage is how to make an owned stored object again.
type lineage struct {
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
	return &lineage{spec: t.spec, key: t.key, retriesLeft: t.retriesLeft, retryOn: t.retryOn, strategy: t.strategy}
}

// nodeDied resubmits the tasks whose results this process owns and that
// were stored on node.
func (cw *coreWorker) nodeDied(node protos.NodeID) {
	if node == cw.nodeID || cw.closed.Load() {
		return
	}
	t := cw.objects
	var rel release
	var redo []*pendingTask
	t.mu.Lock()
	for id, e := range t.m {
		if !e.owned || e.state != objReady || e.lineage == nil || !e.data.GetInStore() || protos.MustUniqueID(e.data.GetNodeId()) != node {
			continue
		}
		lin := e.lineage
		e.state, e.data, e.lineage = objPending, nil, nil
		t.releaseContainedLocked(e.contains, &rel)
		e.contains = nil
		spec := proto.CloneOf(lin.spec)
		spec.Attempt++
		redo = append(redo, &pendingTask{spec: spec, key: lin.key, returnID: id, retriesLeft: lin.retriesLeft - 1, retryOn: lin.retryOn, strategy: lin.strategy})
	}
	t.mu.Unlock()
	rel.run(t)
	if len(redo) == 0 {
		return
	}
	cw.log.Warn().Str("node", node.Short()).Int("objects", len(redo)).Msg("node died: re-running the tasks that made its objects")
	s := cw.sub
	for _, p := range redo {
		s.mu.Lock()
		s.tasks[protos.MustUniqueID(p.spec.GetTaskId())] = p
		s.mu.Unlock()
		s.resolve(p)
	}
}
