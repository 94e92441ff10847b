package core

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// inlineLimit is the largest value that travels inline in messages and
// lives in its owner's memory; larger values go to the node's shared-memory
// store (Ray's max_direct_call_object_size, 100 KiB).
const inlineLimit = 100 * 1024

// storeClient reaches the node's object store: directly when the store
// lives in this process (the embedded cluster), through the raylet socket
// otherwise. Either way the bytes are read and written through this
// process's own mapping of the segment.
type storeClient interface {
	// create reserves size bytes for id; with spill, the store spills
	// other objects to disk to make room if it must.
	create(ctx context.Context, id protos.ObjectID, size uint64, owner protos.WorkerID, spill bool) (uint64, error)
	seal(ctx context.Context, id protos.ObjectID) error
	// acquire returns a sealed object's location and pins it for this
	// process (restoring it from spill first) until release.
	acquire(ctx context.Context, id protos.ObjectID) (off, size uint64, err error)
	release(ids []protos.ObjectID)
	delete(ids []protos.ObjectID)
}

type localStore struct {
	s *objstore.Store
	h objstore.Holder
	// deleted tells the raylet, so copies on other nodes go too.
	deleted func([]protos.ObjectID)
}

func (l localStore) create(_ context.Context, id protos.ObjectID, size uint64, owner protos.WorkerID, spill bool) (uint64, error) {
	if !spill {
		return l.s.TryCreateOwned(id, size, owner)
	}
	return l.s.CreateOwned(id, size, owner)
}
func (l localStore) seal(_ context.Context, id protos.ObjectID) error { return l.s.Seal(id) }
func (l localStore) acquire(_ context.Context, id protos.ObjectID) (uint64, uint64, error) {
	return l.s.Acquire(id, l.h)
}
func (l localStore) release(ids []protos.ObjectID) {
	for _, id := range ids {
		l.s.Release(id, l.h)
	}
}
func (l localStore) delete(ids []protos.ObjectID) {
	for _, id := range ids {
		_ = l.s.Delete(id)
	}
	if l.deleted != nil {
		l.deleted(ids)
	}
}

type rayletStore struct{ c *wire.Conn }

func (r rayletStore) create(ctx context.Context, id protos.ObjectID, size uint64, owner protos.WorkerID, spill bool) (uint64, error) {
	var reply protos.CreateObjectReply
	if err := r.c.Call(ctx, protos.Method_CREATE_OBJECT, &protos.CreateObjectRequest{ObjectId: id.Bytes(), Size: size, OwnerWorkerId: owner.Bytes(), NoSpill: !spill}, &reply); err != nil {
		return 0, err
	}
	return reply.GetOffset(), nil
}
func (r rayletStore) seal(ctx context.Context, id protos.ObjectID) error {
	return r.c.Call(ctx, protos.Method_SEAL_OBJECT, &protos.SealObjectRequest{ObjectId: id.Bytes()}, &protos.SealObjectReply{})
}
func (r rayletStore) acquire(ctx context.Context, id protos.ObjectID) (uint64, uint64, error) {
	var reply protos.GetObjectLocationReply
	if err := r.c.Call(ctx, protos.Method_GET_OBJECT_LOCATION, &protos.GetObjectLocationRequest{ObjectId: id.Bytes(), Pin: true}, &reply); err != nil {
		return 0, 0, err
	}
	if !reply.GetFound() {
		return 0, 0, fmt.Errorf("%w: object %s", objstore.ErrObjectNotFound, id)
	}
	return reply.GetOffset(), reply.GetSize(), nil
}
func (r rayletStore) release(ids []protos.ObjectID) {
	inChunks(ids, func(ids []protos.ObjectID) {
		_ = r.c.Notify(protos.Method_RELEASE_OBJECTS, &protos.ReleaseObjectsRequest{ObjectIds: idBytes(ids)})
	})
}
func (r rayletStore) delete(ids []protos.ObjectID) {
	inChunks(ids, func(ids []protos.ObjectID) {
		_ = r.c.Notify(protos.Method_DELETE_OBJECTS, &protos.DeleteObjectsRequest{ObjectIds: idBytes(ids)})
	})
}

func idBytes(ids []protos.ObjectID) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = id.Bytes()
	}
	return out
}

// storeValue writes encoded bytes to the node's store under id, owned by
// owner (the raylet frees an object whose owner dies).
func (cw *Worker) storeValue(ctx context.Context, id protos.ObjectID, owner *protos.Address, v encoded) (*protos.ObjectData, error) {
	data := v.data
	ownerID, _ := protos.UniqueIDFromBytes(owner.GetWorkerId())
	off, err := cw.node().store.create(ctx, id, uint64(len(data)), ownerID, false)
	if isObjectExists(err) {
		// A previous attempt of the same task stored it before its worker
		// died: this attempt's value replaces it.
		cw.node().store.delete([]protos.ObjectID{id})
		off, err = cw.node().store.create(ctx, id, uint64(len(data)), ownerID, false)
	}
	if isStoreFull(err) {
		off, err = cw.createAfterGC(ctx, id, uint64(len(data)), ownerID)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: storing %d bytes: %w", ErrObjectStoreFull, len(data), err)
	}
	objstore.Copy(cw.node().seg.Slice(off, uint64(len(data))), data)
	if err := cw.node().store.seal(ctx, id); err != nil {
		return nil, fmt.Errorf("seal object %s: %w", id, err)
	}
	return &protos.ObjectData{Encoding: v.enc, NumericKind: v.kind, InStore: true, NodeId: cw.node().id.Bytes(), Size: uint64(len(data))}, nil
}

// readData returns the bytes of a value: inline bytes, or a view of the
// node's store (no copy). A view comes pinned (pinned is true): the caller
// releases the pin (releasePins) once it no longer reads the bytes, or hands
// it to the object's entry (keepView).
//
// owner is the object's owner when the caller knows it (a task's ref
// argument names it); nil means the object table's record.
func (cw *Worker) readData(ctx context.Context, id protos.ObjectID, d *protos.ObjectData, owner *protos.Address) (b []byte, pinned bool, err error) {
	if !d.GetInStore() {
		return d.GetData(), false, nil
	}
	if node := protos.MustUniqueID(d.GetNodeId()); node != cw.node().id {
		err := cw.pull(ctx, id, node, d)
		if errors.Is(err, ErrObjectLost) {
			// This process may hear of the node's death after finding it
			// gone: if it owns the object, rebuild it now and read that;
			// if it borrows it, its owner is rebuilding it, so read the
			// new copy.
			if d2, ok := cw.rebuild(ctx, id, node); ok {
				return cw.readData(ctx, id, d2, owner)
			}
			if d2, ok := cw.relocate(ctx, id, node, owner); ok {
				return cw.readData(ctx, id, d2, owner)
			}
		}
		if err != nil {
			return nil, false, err
		}
	}
	nb := cw.node()
	off, size, err := nb.store.acquire(ctx, id)
	if err != nil {
		if errors.Is(err, wire.ErrClosed) && cw.awaitRebind(ctx, nb) {
			// This machine's raylet went away (the head restarting):
			// read the object through the next one, from the node that
			// holds it, or rebuilt if it was in the old node's store.
			return cw.readData(ctx, id, d, owner)
		}
		if isNotFound(err) {
			return nil, false, fmt.Errorf("%w: object %s is not in the node's store", ErrObjectLost, id)
		}
		return nil, false, fmt.Errorf("%w: object %s: %w", ErrObjectLost, id, err)
	}
	b, err = nb.seg.CheckedSlice(off, size)
	if err != nil {
		cw.releasePins([]protos.ObjectID{id})
		return nil, false, fmt.Errorf("object %s: %w", id, err)
	}
	return b, true, nil
}

// pull has the node's raylet copy an object from the node holding it (the
// one the owner's record names) into this node's store.
func (cw *Worker) pull(ctx context.Context, id protos.ObjectID, node protos.NodeID, d *protos.ObjectData) error {
	req := &protos.PullObjectRequest{ObjectId: id.Bytes(), NodeId: node.Bytes(), Size: d.GetSize()}
	if owner := cw.objects.ownerOf(id); owner != nil {
		req.OwnerWorkerId = owner.GetWorkerId()
	}
	b := cw.node()
	err := b.raylet.Call(ctx, protos.Method_PULL_OBJECT, req, &protos.PullObjectReply{})
	for errors.Is(err, wire.ErrClosed) && cw.awaitRebind(ctx, b) {
		// This machine's raylet went away (the head restarting): a
		// driver asks the next one, as its tasks waiting for a worker do.
		b = cw.node()
		err = b.raylet.Call(ctx, protos.Method_PULL_OBJECT, req, &protos.PullObjectReply{})
	}
	var re *wire.RemoteError
	switch {
	case err == nil:
		return nil
	case isNotFound(err):
		return fmt.Errorf("%w: object %s is no longer on node %s: %w", ErrObjectLost, id, node.Short(), err)
	case errors.As(err, &re) && re.Code == "node_dead":
		return fmt.Errorf("%w: object %s was on node %s, which is gone: %w", ErrObjectLost, id, node.Short(), err)
	case errors.As(err, &re):
		return fmt.Errorf("%w: copying object %s from node %s: %w", ErrObjectLost, id, node.Short(), err)
	}
	return fmt.Errorf("copying object %s from node %s: %w", id, node.Short(), err)
}

// fetchLocal pulls a ready object stored on another node into this one
// (Wait's fetch_local).
func (cw *Worker) fetchLocal(ctx context.Context, id protos.ObjectID) error {
	_, data, _, _ := cw.objects.result(id)
	if !data.GetInStore() {
		return nil
	}
	node := protos.MustUniqueID(data.GetNodeId())
	if node == cw.node().id {
		return nil
	}
	return cw.pull(ctx, id, node, data)
}

// releasePins drops pins taken by readData.
func (cw *Worker) releasePins(ids []protos.ObjectID) {
	if cw.node().store != nil && len(ids) > 0 && !cw.closed.Load() {
		cw.node().store.release(ids)
	}
}

func isNotFound(err error) bool {
	var re *wire.RemoteError
	return errors.Is(err, objstore.ErrObjectNotFound) || (errors.As(err, &re) && re.Code == "not_found")
}

// freeStored frees one owned stored object, wherever its primary is.
func (cw *Worker) freeStored(id protos.ObjectID, data *protos.ObjectData) {
	if node := protos.MustUniqueID(data.GetNodeId()); node != cw.node().id {
		cw.deleteRemote(node, []protos.ObjectID{id})
		return
	}
	cw.deleteStored([]protos.ObjectID{id})
}

// deleteRemote frees owned objects whose primary copy is on node: the
// local raylet deletes its copies and forwards the delete there.
func (cw *Worker) deleteRemote(node protos.NodeID, ids []protos.ObjectID) {
	if cw.node().raylet != nil && len(ids) > 0 && !cw.closed.Load() {
		inChunks(ids, func(ids []protos.ObjectID) {
			_ = cw.node().raylet.Notify(protos.Method_DELETE_OBJECTS, &protos.DeleteObjectsRequest{ObjectIds: idBytes(ids), PrimaryNodeId: node.Bytes()})
		})
	}
}

func (cw *Worker) deleteStored(ids []protos.ObjectID) {
	if cw.node().store != nil && len(ids) > 0 {
		cw.node().store.delete(ids)
	}
}

func isObjectExists(err error) bool {
	var re *wire.RemoteError
	return errors.Is(err, objstore.ErrObjectExists) || (errors.As(err, &re) && re.Code == "exists")
}

// encodeResult encodes a call's result: inline when small, else in the
// node's store under id. The error kind says whose fault a failure is.
// The caller, which owns the result, becomes a borrower of the refs nested
// in it before the reply leaves.
func (cw *Worker) encodeResult(ctx context.Context, id protos.ObjectID, caller *protos.Address, fn string, value any) (*protos.ObjectData, protos.ErrorKind, error) {
	v, err := encodeValue(value)
	if err != nil {
		return nil, protos.ErrorKind_ERROR_KIND_TASK, fmt.Errorf("encode result of %s: %w", fn, err)
	}
	d := v.objectData()
	if len(v.data) > inlineLimit {
		if d, err = cw.storeValue(ctx, id, caller, v); err != nil {
			return nil, protos.ErrorKind_ERROR_KIND_OBJECT_STORE_FULL, err
		}
	}
	if d.NestedRefs, err = cw.lendTo(ctx, v.refs, caller); err != nil {
		return nil, protos.ErrorKind_ERROR_KIND_TASK, err
	}
	return d, 0, nil
}

func isStoreFull(err error) bool {
	var re *wire.RemoteError
	return errors.Is(err, objstore.ErrStoreFull) || (errors.As(err, &re) && re.Code == "store_full")
}

// createAfterGC makes room for a create that found the store full. First
// garbage: objects are freed when the collector finds their last ref gone,
// and Go's collector paces itself by the Go heap, not by the shared memory
// its refs keep alive, so unreachable refs may be holding the store. The
// collection's cleanups run asynchronously, so the create is retried while
// they free objects. Then, if that is not enough, the store spills objects
// to disk.
func (cw *Worker) createAfterGC(ctx context.Context, id protos.ObjectID, size uint64, owner protos.WorkerID) (uint64, error) {
	before := cw.objects.storeFrees.Load()
	runtime.GC()
	for wait := 250 * time.Microsecond; wait <= 16*time.Millisecond; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		now := cw.objects.storeFrees.Load()
		if now == before && wait >= 2*time.Millisecond {
			break // the collection freed nothing more: spill
		}
		before = now
		off, err := cw.node().store.create(ctx, id, size, owner, false)
		if !isStoreFull(err) {
			return off, err
		}
	}
	return cw.node().store.create(ctx, id, size, owner, true)
}
