package core

import (
	"context"
	"fmt"
	"time"

	"github.com/goray/goray/protos"
)

// Put stores v as a new object this process owns.
func (cw *Worker) Put(ctx context.Context, v any) (ObjectRef, error) {
	enc, err := encodeValue(v)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("%w: Put: %v", ErrArgument, err)
	}
	return cw.put(ctx, enc)
}

// GetAll waits for the values of refs, in order. It fails as soon as one
// of them fails, without waiting for the others; a timeout above zero
// bounds the wait (ErrGetTimeout).
func GetAll[T any](ctx context.Context, cw *Worker, refs []ObjectRef, timeout time.Duration) ([]T, error) {
	ids := make([]protos.ObjectID, len(refs))
	for i, r := range refs {
		if r.h == nil {
			return nil, fmt.Errorf("%w: Get of a nil ref (index %d)", ErrArgument, i)
		}
		if r.h.err != nil {
			return nil, r.h.err
		}
		ids[i] = r.h.id
	}
	if _, err := cw.wait(ctx, ids, len(ids), timeout, true); err != nil {
		return nil, err
	}
	datas := make([]*protos.ObjectData, len(ids))
	for i, id := range ids {
		_, data, terr, known := cw.objects.result(id)
		if !known {
			return nil, fmt.Errorf("%w: object %s", ErrObjectLost, id)
		}
		if terr != nil {
			return nil, terr
		}
		datas[i] = data
	}
	out := make([]T, len(refs))
	for i, id := range ids {
		if err := decodeObject(cw, ctx, id, datas[i], &out[i]); err != nil {
			return nil, err
		}
	}
	// Refs decoded from the values are registered with their owners before
	// the caller can drop the refs that kept them alive.
	cw.objects.flushBorrows()
	return out, nil
}

// Wait reports which of refs are ready (done or failed) once numReturns
// are, or the timeout (above zero) expires, then with fewer ready and no
// error. With fetchLocal an object counts once it is in this node's store
// too. Duplicate refs are an error.
func (cw *Worker) Wait(ctx context.Context, refs []ObjectRef, numReturns int, timeout time.Duration, fetchLocal bool) ([]bool, error) {
	if numReturns <= 0 || numReturns > len(refs) {
		return nil, fmt.Errorf("%w: Wait: numReturns %d must be between 1 and the number of refs (%d)", ErrArgument, numReturns, len(refs))
	}
	seen := make(map[protos.ObjectID]bool, len(refs))
	ids := make([]protos.ObjectID, len(refs))
	for i, r := range refs {
		if r.h == nil || r.h.err != nil {
			return nil, fmt.Errorf("%w: Wait: ref %d is nil or failed", ErrArgument, i)
		}
		if seen[r.h.id] {
			return nil, fmt.Errorf("%w: Wait: %s appears twice", ErrDuplicateRef, r.h.id)
		}
		seen[r.h.id] = true
		ids[i] = r.h.id
	}
	var fetch func(int) error
	if fetchLocal {
		fetch = func(i int) error { return cw.fetchLocal(ctx, ids[i]) }
	}
	done, err := cw.waitFetch(ctx, ids, numReturns, timeout, false, fetch)
	if err != nil && err != errWaitTimeout {
		return nil, err
	}
	return done, nil
}

// Cancel cancels the task that returns ref, as Ray's cancel: a queued task
// never runs; a running one sees its context cancelled (or, with force,
// its worker is killed); with recursive the tasks it submitted are
// cancelled too. Only the owner (the submitter) can cancel.
func (cw *Worker) Cancel(ref ObjectRef, force, recursive bool) error {
	if ref.h == nil || ref.h.err != nil {
		return fmt.Errorf("%w: Cancel of a nil or failed ref", ErrArgument)
	}
	if string(ref.h.owner.GetWorkerId()) != string(cw.workerID.Bytes()) {
		return fmt.Errorf("%w: Cancel: only the owner of %s can cancel its task", ErrArgument, ref.h.id)
	}
	if cw.sub.cancel(ref.h.id, force, recursive) {
		return nil
	}
	// Not a pending task: an actor call, or already finished (nothing to do).
	_ = cw.cancelActorCall(ref.h.id.TaskID())
	return nil
}

// put stores an encoded value as a new object this process owns. The new
// object holds the refs nested in the value for as long as it lives.
func (cw *Worker) put(ctx context.Context, v encoded) (ObjectRef, error) {
	id := cw.nextPutID()
	cw.objects.addOwned(id)
	var d *protos.ObjectData
	if len(v.data) > inlineLimit {
		var err error
		d, err = cw.storeValue(ctx, id, cw.node().addr, v)
		if err != nil {
			cw.objects.complete(id, nil, systemError(protos.ErrorKind_ERROR_KIND_OBJECT_STORE_FULL, "Put", id.TaskID(), "%v", err))
			cw.objects.removeLocalRef(id) // drops the pending entry
			return ObjectRef{}, err
		}
	} else {
		if v.enc == protos.Encoding_ENCODING_RAW || v.enc == protos.Encoding_ENCODING_NUMERIC {
			// The caller's slice, not ours to keep.
			v.data = append([]byte(nil), v.data...)
		}
		d = v.objectData()
	}
	ref := newObjectRef(cw, id, cw.node().addr)
	cw.objects.setContains(id, v.refs)
	cw.objects.complete(id, d, nil)
	return ref, nil
}

// decodeObject decodes the value of id into out. A []byte or numeric slice
// in the node's store is returned as a view of the shared memory; the
// object stays pinned (never spilled or freed) while this process holds a
// ref to it. Other values are decoded into Go memory and the pin is dropped
// at once.
func decodeObject[T any](cw *Worker, ctx context.Context, id protos.ObjectID, data *protos.ObjectData, out *T) error {
	b, cached := cw.objects.cachedView(id)
	pinned := false
	if !cached {
		var err error
		if b, pinned, err = cw.readData(ctx, id, data, nil); err != nil {
			return err
		}
	}
	if err := decodeInto(data, b, out); err != nil {
		if pinned {
			cw.releasePins([]protos.ObjectID{id})
		}
		return fmt.Errorf("%w: Get of %s: %v", ErrArgument, id, err)
	}
	if pinned {
		view := data.GetEncoding() == protos.Encoding_ENCODING_RAW || data.GetEncoding() == protos.Encoding_ENCODING_NUMERIC
		if !view || !cw.objects.keepView(id, b) {
			cw.releasePins([]protos.ObjectID{id})
		}
	}
	return nil
}

var errWaitTimeout = fmt.Errorf("%w", ErrGetTimeout)

// wait blocks until need of ids are ready (or one failed, with failFast).
// A task blocked here lends its CPU back to the raylet until it resumes.
func (cw *Worker) wait(ctx context.Context, ids []protos.ObjectID, need int, timeout time.Duration, failFast bool) ([]bool, error) {
	return cw.waitFetch(ctx, ids, need, timeout, failFast, nil)
}

// waitFetch is wait that, with fetch set, also has each object that is
// ready fetched into this node before counting it (fetch's error is the
// Get's to report, so the object counts then too).
func (cw *Worker) waitFetch(ctx context.Context, ids []protos.ObjectID, need int, timeout time.Duration, failFast bool, fetch func(int) error) ([]bool, error) {
	done := make([]bool, len(ids))
	count := 0
	var ch chan int
	var fetching []bool
	// local reports whether ready object i can count now: it is not
	// stored on another node, or its fetch is over. If not, it starts the
	// fetch, which sends i on ch once finished. The buffers are made only
	// when needed: most Waits find enough ready and local objects at once.
	local := func(i int, st objState, data *protos.ObjectData) bool {
		if fetch == nil || (fetching != nil && fetching[i]) || st != objReady || !data.GetInStore() || protos.MustUniqueID(data.GetNodeId()) == cw.node().id {
			return true
		}
		if fetching == nil {
			fetching = make([]bool, len(ids))
		}
		if ch == nil {
			ch = make(chan int, 2*len(ids))
		}
		fetching[i] = true
		go func() {
			_ = fetch(i)
			ch <- i
		}()
		return false
	}
	var pending []bool
	for i, id := range ids {
		st, data, _, known := cw.objects.result(id)
		if known && st != objPending {
			if !local(i, st, data) {
				if pending == nil {
					pending = make([]bool, len(ids))
				}
				pending[i] = true
				continue
			}
			done[i] = true
			count++
			if failFast && st == objFailed {
				return done, nil
			}
		}
	}
	if count >= need {
		return done, nil
	}
	if ch == nil {
		ch = make(chan int, 2*len(ids))
	}
	for i, id := range ids {
		if done[i] || (pending != nil && pending[i]) {
			continue
		}
		i := i
		if !cw.objects.onReady(id, func() { ch <- i }) {
			ch <- i
		}
	}
	if ti := taskInfoFrom(ctx); ti != nil && cw.isWorker {
		cw.setBlocked(ti, true)
		defer cw.setBlocked(ti, false)
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for count < need {
		select {
		case i := <-ch:
			if done[i] {
				continue
			}
			if st, data, _, _ := cw.objects.result(ids[i]); !local(i, st, data) {
				continue
			}
			done[i] = true
			count++
			if failFast {
				if st, _, _, _ := cw.objects.result(ids[i]); st == objFailed {
					return done, nil
				}
			}
		case <-timer:
			if failFast {
				return done, fmt.Errorf("%w after %v (%d of %d objects ready)", ErrGetTimeout, timeout, count, len(ids))
			}
			return done, errWaitTimeout
		case <-ctx.Done():
			return done, ctx.Err()
		}
	}
	return done, nil
}

func (cw *Worker) setBlocked(ti *taskInfo, blocked bool) {
	var n int32
	if blocked {
		n = ti.blocked.Add(1)
	} else {
		n = ti.blocked.Add(-1) + 1
	}
	if n == 1 {
		cw.exec.setBlocked(ti.leaseID, blocked)
	}
}
