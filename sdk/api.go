package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/goray/goray/protos"
)

// Put stores v and returns a ref to it. Values up to 100 KiB stay in this
// process's memory; larger ones go to the node's shared-memory store.
func Put[T any](ctx context.Context, v T) (Ref[T], error) {
	cw := current()
	if cw == nil {
		return Ref[T]{}, ErrNotInitialized
	}
	enc, err := encodeValue(v)
	if err != nil {
		return Ref[T]{}, fmt.Errorf("%w: Put: %v", ErrArgument, err)
	}
	ref, err := cw.put(ctx, enc)
	if err != nil {
		return Ref[T]{}, err
	}
	return Ref[T]{ref}, nil
}

// put stores an encoded value as a new object this process owns. The new
// object holds the refs nested in the value for as long as it lives.
func (cw *coreWorker) put(ctx context.Context, v encoded) (ObjectRef, error) {
	id := cw.nextPutID()
	cw.objects.addOwned(id)
	var d *protos.ObjectData
	if len(v.data) > inlineLimit {
		var err error
		d, err = cw.storeValue(ctx, id, cw.addr, v)
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
	ref := newObjectRef(cw, id, cw.addr)
	cw.objects.setContains(id, v.refs)
	cw.objects.complete(id, d, nil)
	return ref, nil
}

// Get waits for the value of ref. A task that failed gives a *TaskError;
// with the Timeout option, running out of time gives ErrGetTimeout.
func Get[T any](ctx context.Context, ref Ref[T], opts ...GetOption) (T, error) {
	var zero T
	vals, err := GetAll(ctx, []Ref[T]{ref}, opts...)
	if err != nil {
		return zero, err
	}
	return vals[0], nil
}

// GetAll waits for the values of refs, in order. It fails as soon as one of
// them fails, without waiting for the others.
func GetAll[T any](ctx context.Context, refs []Ref[T], opts ...GetOption) ([]T, error) {
	cw := current()
	if cw == nil {
		return nil, ErrNotInitialized
	}
	var o getOptions
	for _, f := range opts {
		f(&o)
	}
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
	if _, err := cw.wait(ctx, ids, len(ids), o.timeout, true); err != nil {
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

// decodeObject decodes the value of id into out. A []byte or numeric slice
// in the node's store is returned as a view of the shared memory; the
// object stays pinned (never spilled or freed) while this process holds a
// ref to it. Other values are decoded into Go memory and the pin is dropped
// at once.
func decodeObject[T any](cw *coreWorker, ctx context.Context, id protos.ObjectID, data *protos.ObjectData, out *T) error {
	b, cached := cw.objects.cachedView(id)
	pinned := false
	if !cached {
		var err error
		if b, pinned, err = cw.readData(ctx, id, data); err != nil {
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

// Wait returns, in input order, the refs that are ready (done or failed)
// and those that are not, once numReturns are ready or the Timeout option
// expires (then with fewer ready and no error). Duplicate refs are an
// error; no refs give two empty lists.
func Wait(ctx context.Context, refs []ObjectRef, numReturns int, opts ...GetOption) (ready, notReady []ObjectRef, err error) {
	cw := current()
	if cw == nil {
		return nil, nil, ErrNotInitialized
	}
	if len(refs) == 0 {
		return []ObjectRef{}, []ObjectRef{}, nil
	}
	if numReturns <= 0 || numReturns > len(refs) {
		return nil, nil, fmt.Errorf("%w: Wait: numReturns %d must be between 1 and the number of refs (%d)", ErrArgument, numReturns, len(refs))
	}
	var o getOptions
	for _, f := range opts {
		f(&o)
	}
	seen := make(map[protos.ObjectID]bool, len(refs))
	ids := make([]protos.ObjectID, len(refs))
	for i, r := range refs {
		if r.h == nil || r.h.err != nil {
			return nil, nil, fmt.Errorf("%w: Wait: ref %d is nil or failed", ErrArgument, i)
		}
		if seen[r.h.id] {
			return nil, nil, fmt.Errorf("%w: Wait: %s appears twice", ErrDuplicateRef, r.h.id)
		}
		seen[r.h.id] = true
		ids[i] = r.h.id
	}
	var fetch func(int) error
	if !o.noFetch {
		fetch = func(i int) error { return cw.fetchLocal(ctx, ids[i]) }
	}
	done, err := cw.waitFetch(ctx, ids, numReturns, o.timeout, false, fetch)
	if err != nil && err != errWaitTimeout {
		return nil, nil, err
	}
	ready, notReady = make([]ObjectRef, 0, numReturns), make([]ObjectRef, 0, len(refs)-numReturns)
	for i, r := range refs {
		if done[i] && len(ready) < numReturns {
			ready = append(ready, r)
		} else {
			notReady = append(notReady, r)
		}
	}
	return ready, notReady, nil
}

var errWaitTimeout = fmt.Errorf("%w", ErrGetTimeout)

// wait blocks until need of ids are ready (or one failed, with failFast).
// A task blocked here lends its CPU back to the raylet until it resumes.
func (cw *coreWorker) wait(ctx context.Context, ids []protos.ObjectID, need int, timeout time.Duration, failFast bool) ([]bool, error) {
	return cw.waitFetch(ctx, ids, need, timeout, failFast, nil)
}

// waitFetch is wait that, with fetch set, also has each object that is
// ready fetched into this node before counting it (fetch's error is the
// Get's to report, so the object counts then too).
func (cw *coreWorker) waitFetch(ctx context.Context, ids []protos.ObjectID, need int, timeout time.Duration, failFast bool, fetch func(int) error) ([]bool, error) {
	done := make([]bool, len(ids))
	count := 0
	var ch chan int
	var fetching []bool
	// local reports whether ready object i can count now: it is not
	// stored on another node, or its fetch is over. If not, it starts the
	// fetch, which sends i on ch once finished. The buffers are made only
	// when needed: most Waits find enough ready and local objects at once.
	local := func(i int, st objState, data *protos.ObjectData) bool {
		if fetch == nil || (fetching != nil && fetching[i]) || st != objReady || !data.GetInStore() || protos.MustUniqueID(data.GetNodeId()) == cw.nodeID {
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

func (cw *coreWorker) setBlocked(ti *taskInfo, blocked bool) {
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

// CancelOption sets an option of Cancel.
type CancelOption func(*cancelOptions)

type cancelOptions struct{ force, noRecursive bool }

// Force kills the worker running the task instead of interrupting it.
func Force() CancelOption { return func(o *cancelOptions) { o.force = true } }

// NoRecursive leaves the tasks the cancelled task submitted running.
func NoRecursive() CancelOption { return func(o *cancelOptions) { o.noRecursive = true } }

// Cancel cancels the task that returns ref, as Ray's cancel: a queued task
// never runs; a running one sees its context cancelled (or, with Force, its
// worker is killed); the tasks it submitted are cancelled too unless
// NoRecursive; Get of the ref gives ErrTaskCancelled and tasks that take it
// as an argument fail. Only the owner (the submitter) can cancel.
func Cancel(ctx context.Context, ref ObjectRef, opts ...CancelOption) error {
	cw := current()
	if cw == nil {
		return ErrNotInitialized
	}
	if ref.h == nil || ref.h.err != nil {
		return fmt.Errorf("%w: Cancel of a nil or failed ref", ErrArgument)
	}
	var o cancelOptions
	for _, f := range opts {
		f(&o)
	}
	if string(ref.h.owner.GetWorkerId()) != string(cw.workerID.Bytes()) {
		return fmt.Errorf("%w: Cancel: only the owner of %s can cancel its task", ErrArgument, ref.h.id)
	}
	if cw.sub.cancel(ref.h.id, o.force, !o.noRecursive) {
		return nil
	}
	// Not a pending task: an actor call, or already finished (nothing to do).
	_ = cw.cancelActorCall(ref.h.id.TaskID())
	return nil
}
