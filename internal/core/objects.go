package core

import (
	"sync"
	"sync/atomic"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// objectTable is a process's view of the objects it owns or borrows: the
// owner's memory store for small values, the location of large ones, the
// reference counts that decide when an object is freed, and the waiters
// blocked on objects not yet ready.
//
// Reference counting follows Ray's ownership design. The owner (the process
// that put the object or submitted the task returning it) frees the object,
// everywhere, once none of these holds it:
//
//   - localRefs: live ObjectRef values in the process (the garbage
//     collector's cleanups decrement it);
//   - submittedRefs: pending tasks and actor calls taking the object as an
//     argument, at the top level or nested in an argument's value;
//   - containedRefs: objects of this process whose values nest a ref to it
//     (a Put value, a task's return value);
//   - borrowers: other processes that hold refs (owner only).
//
// A process that decodes a ref owned by another registers itself as a
// borrower with the owner (ADD_BORROWERS) and unregisters once its own
// counts reach zero (REMOVE_BORROWERS). Registration is asynchronous but
// completes before the process hands the value on (a task's reply, the end
// of a Get; see flushBorrows), while the sender still holds the object.
// A worker returning a value that nests refs registers its caller as a
// borrower before replying, so the refs are never unowned in between.
type objectTable struct {
	cw *Worker
	mu sync.Mutex
	m  map[protos.ObjectID]*objectEntry

	// Borrower registrations and removals waiting to be sent, in order, per
	// owner endpoint, and the count of those not yet acknowledged.
	regQueue   map[string][]borrowOp
	regOwners  map[string]*protos.Address
	regSending bool
	regPending int
	regDone    *sync.Cond
	borrowed   int // registered borrowed entries, for gcSoon
	// storeFrees counts store deletes this process asked for (see
	// createAfterGC).
	storeFrees atomic.Uint64
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

	localRefs     int
	submittedRefs int
	containedRefs int
	// contains lists the refs nested in this object's value that this
	// process holds (through their containedRefs) while the entry lives.
	contains []protos.ObjectID
	// borrowers are the other processes holding refs, by worker id (owner
	// only).
	borrowers map[string]*protos.Address
	// registered: this process is a registered borrower and must
	// unregister with the owner when the entry goes.
	registered bool
	// escaped is set once a ref to the object was encoded into a value
	// outside the runtime's tracking (for example by msgpack.Marshal in
	// user code): the owner then keeps it until it exits.
	escaped  bool
	fetching bool
	// view is the pinned view of the object in the node's store handed out
	// by Get; the pin is dropped with the entry.
	view   []byte
	pinned bool
	// lineage, for an owned object a task stored, re-makes it if its node
	// dies (reconstruct.go).
	lineage *lineage
}

type borrowOp struct {
	add bool
	id  protos.ObjectID
}

func newObjectTable(cw *Worker) *objectTable {
	t := &objectTable{cw: cw, m: map[protos.ObjectID]*objectEntry{}, regQueue: map[string][]borrowOp{}, regOwners: map[string]*protos.Address{}}
	t.regDone = sync.NewCond(&t.mu)
	return t
}

// release is what freeing entries asks of the world outside the lock.
type release struct {
	deletes []protos.ObjectID // owned objects in the node's store
	// remote are owned objects whose primary copy is on another node.
	remote   map[protos.NodeID][]protos.ObjectID
	unpins   []protos.ObjectID // pins this process held
	borrowed bool              // borrower removals were queued
}

func (r *release) run(t *objectTable) {
	if len(r.deletes) > 0 {
		t.cw.deleteStored(r.deletes)
		t.storeFrees.Add(uint64(len(r.deletes)))
	}
	for node, ids := range r.remote {
		t.cw.deleteRemote(node, ids)
	}
	if len(r.unpins) > 0 {
		t.cw.releasePins(r.unpins)
	}
	if r.borrowed {
		t.kickRegistrations()
	}
}

func (t *objectTable) isSelf(a *protos.Address) bool {
	return a != nil && t.cw.node().addr != nil && string(a.GetWorkerId()) == string(t.cw.node().addr.GetWorkerId())
}

// addOwned creates the entry for an object this process owns, pending.
func (t *objectTable) addOwned(id protos.ObjectID) {
	t.mu.Lock()
	if _, ok := t.m[id]; !ok {
		t.m[id] = &objectEntry{owned: true, owner: t.cw.node().addr}
	}
	t.mu.Unlock()
}

// complete records a value (data) or an error for id and runs its waiters.
func (t *objectTable) complete(id protos.ObjectID, data *protos.ObjectData, err *TaskError) {
	t.completeWith(id, data, err, nil, nil)
}

// completeResult is complete for the value of a task, actor call or stream
// item this process owns: the worker that produced it registered this
// process as a borrower of the refs nested in it (or, for refs this process
// owns, counted the containment), and the new object now holds them.
func (t *objectTable) completeResult(id protos.ObjectID, data *protos.ObjectData, err *TaskError) {
	t.completeWith(id, data, err, data.GetNestedRefs(), nil)
}

// completeWith records a result; kept reports that the entry took lin (and
// with it the holds on the task's arguments).
func (t *objectTable) completeWith(id protos.ObjectID, data *protos.ObjectData, err *TaskError, nested []*protos.ObjectRefProto, lin *lineage) (kept bool) {
	var rel release
	t.mu.Lock()
	contains := t.adoptNestedLocked(nested)
	e, ok := t.m[id]
	if !ok || e.state != objPending {
		// Nobody waits for this value any more (cancelled, retried, all
		// refs dropped): give back what it would have held.
		t.releaseContainedLocked(contains, &rel)
		t.mu.Unlock()
		if !ok && data.GetInStore() && err == nil {
			t.cw.freeStored(id, data)
		}
		rel.run(t)
		return false
	}
	if err != nil {
		e.state, e.err = objFailed, err
	} else {
		e.state, e.data, e.lineage = objReady, data, lin
		kept = lin != nil
	}
	e.contains = append(e.contains, contains...)
	e.fetching = false
	waiters := e.waiters
	e.waiters = nil
	t.maybeFreeLocked(id, e, &rel)
	t.mu.Unlock()
	for _, w := range waiters {
		w()
	}
	rel.run(t)
	return kept
}

// adoptNestedLocked takes the containment holds for refs nested in a
// result. For refs this process owns, the producing worker already counted
// them (ADD_BORROWERS naming this process); for others it registered this
// process with their owner, so the entry starts registered.
func (t *objectTable) adoptNestedLocked(nested []*protos.ObjectRefProto) []protos.ObjectID {
	if len(nested) == 0 {
		return nil
	}
	ids := make([]protos.ObjectID, 0, len(nested))
	for _, r := range nested {
		id, err := protos.ObjectIDFromBytes(r.GetObjectId())
		if err != nil {
			continue
		}
		ids = append(ids, id)
		if t.isSelf(r.GetOwner()) {
			continue
		}
		e, ok := t.m[id]
		if !ok {
			e = &objectEntry{owner: r.GetOwner()}
			t.m[id] = e
		}
		if !e.registered {
			e.registered = true
			t.borrowed++
		}
		e.containedRefs++
	}
	return ids
}

// releaseContainedLocked drops one containment hold on each id.
func (t *objectTable) releaseContainedLocked(ids []protos.ObjectID, rel *release) {
	for _, id := range ids {
		if e, ok := t.m[id]; ok {
			e.containedRefs--
			t.maybeFreeLocked(id, e, rel)
		}
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
		e.owned = t.isSelf(owner)
		if e.owned {
			// Our own object, already freed: the ref was revived from a
			// value after its last ref was dropped.
			e.state = objFailed
			e.err = systemError(protos.ErrorKind_ERROR_KIND_OBJECT_LOST, "", id.TaskID(), "object %s was freed", id)
		}
		t.m[id] = e
	}
	if !e.owned && !e.registered && owner != nil {
		e.registered = true
		t.borrowed++
		t.queueBorrowLocked(owner, borrowOp{add: true, id: id})
		defer t.kickRegistrations()
	}
	e.localRefs++
	t.mu.Unlock()
}

func (t *objectTable) removeLocalRef(id protos.ObjectID) {
	var rel release
	t.mu.Lock()
	if e, ok := t.m[id]; ok {
		e.localRefs--
		t.maybeFreeLocked(id, e, &rel)
	}
	t.mu.Unlock()
	rel.run(t)
}

func (t *objectTable) addSubmitted(id protos.ObjectID) {
	t.mu.Lock()
	if e, ok := t.m[id]; ok {
		e.submittedRefs++
	}
	t.mu.Unlock()
}

func (t *objectTable) removeSubmitted(ids []protos.ObjectID) {
	var rel release
	t.mu.Lock()
	for _, id := range ids {
		if e, ok := t.m[id]; ok {
			e.submittedRefs--
			t.maybeFreeLocked(id, e, &rel)
		}
	}
	t.mu.Unlock()
	rel.run(t)
}

// setContains records that the value of id (owned, not yet complete) nests
// refs, and holds them for as long as id lives.
func (t *objectTable) setContains(id protos.ObjectID, refs []ObjectRef) {
	if len(refs) == 0 {
		return
	}
	t.mu.Lock()
	if e, ok := t.m[id]; ok {
		for _, r := range refs {
			if x, ok := t.m[r.h.id]; ok {
				x.containedRefs++
				e.contains = append(e.contains, r.h.id)
			}
		}
	}
	t.mu.Unlock()
}

func (t *objectTable) markEscaped(id protos.ObjectID) {
	t.mu.Lock()
	if e, ok := t.m[id]; ok {
		e.escaped = true
	}
	t.mu.Unlock()
}

// maybeFreeLocked drops an entry nobody can reach, and with it the holds it
// had on the refs nested in its value.
func (t *objectTable) maybeFreeLocked(id protos.ObjectID, e *objectEntry, rel *release) {
	if e.localRefs > 0 || e.submittedRefs > 0 || e.containedRefs > 0 || len(e.borrowers) > 0 || e.escaped {
		return
	}
	// An owned object still being computed keeps its entry for the result;
	// a borrowed one only while a fetch is in flight (a borrower that never
	// read the value has nothing to wait for).
	if e.state == objPending && (e.owned || e.fetching) {
		return
	}
	delete(t.m, id)
	if e.lineage != nil {
		t.releaseLineageLocked(e.lineage, rel)
	}
	if e.pinned {
		rel.unpins = append(rel.unpins, id)
	}
	if e.owned && e.data.GetInStore() {
		if node := protos.MustUniqueID(e.data.GetNodeId()); node != t.cw.node().id {
			if rel.remote == nil {
				rel.remote = map[protos.NodeID][]protos.ObjectID{}
			}
			rel.remote[node] = append(rel.remote[node], id)
		} else {
			rel.deletes = append(rel.deletes, id)
		}
	}
	if e.registered {
		t.borrowed--
		t.queueBorrowLocked(e.owner, borrowOp{id: id})
		rel.borrowed = true
	}
	t.releaseContainedLocked(e.contains, rel)
}

// addBorrowers records borrower as holding refs to ids, which this process
// owns. It returns the ids it does not know (already freed). A process
// borrowing its own object (a value it owns nests the ref) counts as a
// containment instead.
func (t *objectTable) addBorrowers(ids []protos.ObjectID, borrower *protos.Address) (unknown []protos.ObjectID) {
	self := t.isSelf(borrower)
	recorded := false
	t.mu.Lock()
	for _, id := range ids {
		e, ok := t.m[id]
		if !ok || !e.owned {
			unknown = append(unknown, id)
			continue
		}
		if self {
			e.containedRefs++
			continue
		}
		if e.borrowers == nil {
			e.borrowers = map[string]*protos.Address{}
		}
		e.borrowers[string(borrower.GetWorkerId())] = borrower
		recorded = true
	}
	t.mu.Unlock()
	if recorded {
		// Watch the borrower: if it dies, its holds go with it. One that
		// holds nothing here is not dialled (whatever address it gave).
		t.cw.withPeerAt(borrower, func(_ *wire.Conn, err error) {
			if err != nil {
				t.dropBorrower(borrower.GetEndpoint())
			}
		})
	}
	return unknown
}

// removeBorrowers is REMOVE_BORROWERS: borrower no longer holds ids.
func (t *objectTable) removeBorrowers(ids []protos.ObjectID, borrower *protos.Address) {
	var rel release
	key := string(borrower.GetWorkerId())
	t.mu.Lock()
	for _, id := range ids {
		if e, ok := t.m[id]; ok && e.borrowers != nil {
			delete(e.borrowers, key)
			t.maybeFreeLocked(id, e, &rel)
		}
	}
	t.mu.Unlock()
	rel.run(t)
}

// dropBorrower forgets a borrower that died.
func (t *objectTable) dropBorrower(endpoint string) {
	var rel release
	t.mu.Lock()
	for id, e := range t.m {
		for k, b := range e.borrowers {
			if b.GetEndpoint() == endpoint {
				delete(e.borrowers, k)
				t.maybeFreeLocked(id, e, &rel)
			}
		}
	}
	t.mu.Unlock()
	rel.run(t)
}

// failOwnedBy fails the borrowed objects owned by the worker at endpoint
// (its owner died): pending ones, and ones in the store, which the raylet
// frees with their owner. Small values already fetched stay readable.
func (t *objectTable) failOwnedBy(endpoint string) {
	var ids []protos.ObjectID
	t.mu.Lock()
	for id, e := range t.m {
		if e.owned || e.owner.GetEndpoint() != endpoint {
			continue
		}
		if e.state == objPending {
			ids = append(ids, id)
		} else if e.state == objReady && e.data.GetInStore() {
			e.state, e.data = objFailed, nil
			e.err = ownerDiedError(id, endpoint)
		}
	}
	t.mu.Unlock()
	for _, id := range ids {
		t.complete(id, nil, ownerDiedError(id, endpoint))
	}
}

func ownerDiedError(id protos.ObjectID, endpoint string) *TaskError {
	return systemError(protos.ErrorKind_ERROR_KIND_OWNER_DIED, "", id.TaskID(), "owner of object %s at %s died", id, endpoint)
}

// cachedView returns the pinned view of id handed out by an earlier Get.
func (t *objectTable) cachedView(id protos.ObjectID) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[id]; ok && e.pinned {
		return e.view, true
	}
	return nil, false
}

// keepView attaches a pinned view to id's entry, so the pin lasts while the
// process holds refs to it. It reports false when the entry is gone or
// already holds a pin (the caller then drops its own pin).
func (t *objectTable) keepView(id protos.ObjectID, view []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok || e.pinned {
		return false
	}
	e.pinned, e.view = true, view
	return true
}

// hasBorrowed reports whether this process holds borrowed refs, which it
// must give back promptly (see coreWorker.gcSoon).
func (t *objectTable) hasBorrowed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.borrowed > 0
}

// refsInfo lists the object table for goray memory.
func (t *objectTable) refsInfo() *protos.GetRefsReply {
	out := &protos.GetRefsReply{Process: t.cw.node().addr}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.m {
		state := "pending"
		switch e.state {
		case objReady:
			state = "ready"
		case objFailed:
			state = "failed"
		}
		out.Refs = append(out.Refs, &protos.RefInfo{
			ObjectId:      id.Bytes(),
			Owner:         e.owner,
			Owned:         e.owned,
			State:         state,
			Size:          uint64(max(len(e.data.GetData()), int(e.data.GetSize()))),
			InStore:       e.data.GetInStore(),
			LocalRefs:     int32(e.localRefs),
			SubmittedRefs: int32(e.submittedRefs),
			ContainedRefs: int32(e.containedRefs),
			Borrowers:     int32(len(e.borrowers)),
			Pinned:        e.pinned,
			Escaped:       e.escaped,
			NodeId:        e.data.GetNodeId(),
		})
	}
	return out
}

// ownerOf returns the owner of id as this process knows it (itself for
// objects it owns), or nil.
func (t *objectTable) ownerOf(id protos.ObjectID) *protos.Address {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	if !ok {
		return nil
	}
	if e.owned {
		return t.cw.node().addr
	}
	return e.owner
}
