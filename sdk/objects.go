package sdk

import (
	"sync"

	"github.com/goray/goray/protos"
)

// objectTable is a process's view of the objects it owns or borrows: the
// owner's memory store for small values, the location of large ones, the
// reference counts that decide when an object is freed, and the waiters
// blocked on objects not yet ready.
type objectTable struct {
	cw *coreWorker
	mu sync.Mutex
	m  map[protos.ObjectID]*objectEntry
}

type objState uint8

const (
	objPending objState = iota
	objReady
	objFailed
)

type objectEntry struct {
	state objState
	data  *protos.ObjectData
	err   *TaskError
	owner *protos.Address
	owned bool
	// waiters run once, outside the lock, when the object becomes ready or fails.
	waiters []func()
	// localRefs counts live refs in this process; submittedRefs counts
	// pending tasks that take the object as an argument.
	localRefs     int
	submittedRefs int
	// escaped is set once a ref to the object was encoded into a value that
	// left this process: the owner then keeps it until it exits.
	escaped  bool
	fetching bool
}

func newObjectTable(cw *coreWorker) *objectTable {
	return &objectTable{cw: cw, m: map[protos.ObjectID]*objectEntry{}}
}

// addOwned creates the entry for an object this process owns, pending.
func (t *objectTable) addOwned(id protos.ObjectID) {
	t.mu.Lock()
	if _, ok := t.m[id]; !ok {
		t.m[id] = &objectEntry{owned: true, owner: t.cw.addr}
	}
	t.mu.Unlock()
}

// complete records a value (data) or an error for id and runs its waiters.
func (t *objectTable) complete(id protos.ObjectID, data *protos.ObjectData, err *TaskError) {
	t.mu.Lock()
	e, ok := t.m[id]
	if !ok || e.state != objPending {
		t.mu.Unlock()
		if !ok && data != nil && data.GetInStore() {
			// Nobody holds a ref any more: free the stored copy at once.
			t.cw.deleteStored([]protos.ObjectID{id})
		}
		return
	}
	if err != nil {
		e.state, e.err = objFailed, err
	} else {
		e.state, e.data = objReady, data
	}
	e.fetching = false
	waiters := e.waiters
	e.waiters = nil
	freed := t.maybeFreeLocked(id, e)
	t.mu.Unlock()
	for _, w := range waiters {
		w()
	}
	if freed != nil {
		t.cw.deleteStored(freed)
	}
}

// onReady calls fn once id is ready or failed (at once if it already is).
// It returns false when the object is unknown.
func (t *objectTable) onReady(id protos.ObjectID, fn func()) bool {
	t.mu.Lock()
	e, ok := t.m[id]
	if !ok {
		t.mu.Unlock()
		return false
	}
	if e.state != objPending {
		t.mu.Unlock()
		fn()
		return true
	}
	e.waiters = append(e.waiters, fn)
	fetch := !e.owned && !e.fetching
	if fetch {
		e.fetching = true
	}
	owner := e.owner
	t.mu.Unlock()
	if fetch {
		t.cw.fetchFromOwner(id, owner)
	}
	return true
}

// result returns the state of id.
func (t *objectTable) result(id protos.ObjectID) (state objState, data *protos.ObjectData, err *TaskError, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok {
		return objPending, nil, nil, false
	}
	return e.state, e.data, e.err, true
}

func (t *objectTable) addLocalRef(id protos.ObjectID, owner *protos.Address) {
	t.mu.Lock()
	e, ok := t.m[id]
	if !ok {
		e = &objectEntry{owner: owner}
		e.owned = owner != nil && t.cw.addr != nil && string(owner.GetWorkerId()) == string(t.cw.addr.GetWorkerId())
		if e.owned {
			// Our own object, already freed: the ref was revived from a
			// value after its last ref was dropped.
			e.state = objFailed
			e.err = systemError(protos.ErrorKind_ERROR_KIND_OBJECT_LOST, "", id.TaskID(), "object %s was freed", id)
		}
		t.m[id] = e
	}
	e.localRefs++
	t.mu.Unlock()
}

func (t *objectTable) removeLocalRef(id protos.ObjectID) {
	t.mu.Lock()
	e, ok := t.m[id]
	if !ok {
		t.mu.Unlock()
		return
	}
	e.localRefs--
	freed := t.maybeFreeLocked(id, e)
	t.mu.Unlock()
	if freed != nil {
		t.cw.deleteStored(freed)
	}
}

func (t *objectTable) addSubmitted(id protos.ObjectID) {
	t.mu.Lock()
	if e, ok := t.m[id]; ok {
		e.submittedRefs++
	}
	t.mu.Unlock()
}

func (t *objectTable) removeSubmitted(ids []protos.ObjectID) {
	var freed []protos.ObjectID
	t.mu.Lock()
	for _, id := range ids {
		if e, ok := t.m[id]; ok {
			e.submittedRefs--
			freed = append(freed, t.maybeFreeLocked(id, e)...)
		}
	}
	t.mu.Unlock()
	if freed != nil {
		t.cw.deleteStored(freed)
	}
}

func (t *objectTable) markEscaped(id protos.ObjectID) {
	t.mu.Lock()
	if e, ok := t.m[id]; ok {
		e.escaped = true
	}
	t.mu.Unlock()
}

// maybeFreeLocked drops an entry nobody can reach. It returns the ids to
// delete from the node's store (owned objects that live there).
func (t *objectTable) maybeFreeLocked(id protos.ObjectID, e *objectEntry) []protos.ObjectID {
	if e.localRefs > 0 || e.submittedRefs > 0 || e.escaped || e.state == objPending {
		return nil
	}
	delete(t.m, id)
	if e.owned && e.data.GetInStore() {
		return []protos.ObjectID{id}
	}
	return nil
}

// failOwnedBy fails every pending borrowed object owned by the worker at
// endpoint (its owner died).
func (t *objectTable) failOwnedBy(endpoint string) {
	var ids []protos.ObjectID
	t.mu.Lock()
	for id, e := range t.m {
		if !e.owned && e.state == objPending && e.owner.GetEndpoint() == endpoint {
			ids = append(ids, id)
		}
	}
	t.mu.Unlock()
	for _, id := range ids {
		t.complete(id, nil, systemError(protos.ErrorKind_ERROR_KIND_OWNER_DIED, "", id.TaskID(), "owner of object %s at %s died", id, endpoint))
	}
}
