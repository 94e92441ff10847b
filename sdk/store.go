package sdk

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
	create(ctx context.Context, id protos.ObjectID, size uint64) (uint64, error)
	seal(ctx context.Context, id protos.ObjectID) error
	locate(ctx context.Context, id protos.ObjectID) (off, size uint64, ok bool, err error)
	delete(ids []protos.ObjectID)
}

type localStore struct{ s *objstore.Store }

func (l localStore) create(_ context.Context, id protos.ObjectID, size uint64) (uint64, error) {
	return l.s.Create(id, size)
}
func (l localStore) seal(_ context.Context, id protos.ObjectID) error { return l.s.Seal(id) }
func (l localStore) locate(_ context.Context, id protos.ObjectID) (uint64, uint64, bool, error) {
	off, size, ok := l.s.Get(id)
	return off, size, ok, nil
}
func (l localStore) delete(ids []protos.ObjectID) {
	for _, id := range ids {
		_ = l.s.Delete(id)
	}
}

type rayletStore struct{ c *wire.Conn }

func (r rayletStore) create(ctx context.Context, id protos.ObjectID, size uint64) (uint64, error) {
	var reply protos.CreateObjectReply
	if err := r.c.Call(ctx, protos.Method_CREATE_OBJECT, &protos.CreateObjectRequest{ObjectId: id.Bytes(), Size: size}, &reply); err != nil {
		return 0, err
	}
	return reply.GetOffset(), nil
}
func (r rayletStore) seal(ctx context.Context, id protos.ObjectID) error {
	return r.c.Call(ctx, protos.Method_SEAL_OBJECT, &protos.SealObjectRequest{ObjectId: id.Bytes()}, &protos.SealObjectReply{})
}
func (r rayletStore) locate(ctx context.Context, id protos.ObjectID) (uint64, uint64, bool, error) {
	var reply protos.GetObjectLocationReply
	if err := r.c.Call(ctx, protos.Method_GET_OBJECT_LOCATION, &protos.GetObjectLocationRequest{ObjectId: id.Bytes()}, &reply); err != nil {
		return 0, 0, false, err
	}
	return reply.GetOffset(), reply.GetSize(), reply.GetFound(), nil
}
func (r rayletStore) delete(ids []protos.ObjectID) {
	req := &protos.DeleteObjectsRequest{}
	for _, id := range ids {
		req.ObjectIds = append(req.ObjectIds, id.Bytes())
	}
	_ = r.c.Notify(protos.Method_DELETE_OBJECTS, req)
}

// storeValue writes encoded bytes to the node's store under id.
func (cw *coreWorker) storeValue(ctx context.Context, id protos.ObjectID, enc protos.Encoding, data []byte) (*protos.ObjectData, error) {
	off, err := cw.store.create(ctx, id, uint64(len(data)))
	if isObjectExists(err) {
		// A previous attempt of the same task stored it before its worker
		// died: this attempt's value replaces it.
		cw.store.delete([]protos.ObjectID{id})
		off, err = cw.store.create(ctx, id, uint64(len(data)))
	}
	if isStoreFull(err) {
		off, err = cw.createAfterGC(ctx, id, uint64(len(data)))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: storing %d bytes: %w", ErrObjectStoreFull, len(data), err)
	}
	objstore.Copy(cw.seg.Slice(off, uint64(len(data))), data)
	if err := cw.store.seal(ctx, id); err != nil {
		return nil, fmt.Errorf("seal object %s: %w", id, err)
	}
	return &protos.ObjectData{Encoding: enc, InStore: true, NodeId: cw.nodeID.Bytes(), Size: uint64(len(data))}, nil
}

// readData returns the bytes of a value: inline bytes, or a view of the
// node's store (no copy).
func (cw *coreWorker) readData(ctx context.Context, id protos.ObjectID, d *protos.ObjectData) ([]byte, error) {
	if !d.GetInStore() {
		return d.GetData(), nil
	}
	if protos.MustUniqueID(d.GetNodeId()) != cw.nodeID {
		return nil, fmt.Errorf("object %s is on node %x, not this node (cross-node transfer is not available yet)", id, d.GetNodeId())
	}
	off, size, ok, err := cw.store.locate(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("locate object %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: object %s is not in the node's store", ErrObjectLost, id)
	}
	return cw.seg.Slice(off, size), nil
}

func (cw *coreWorker) deleteStored(ids []protos.ObjectID) {
	if cw.store != nil && len(ids) > 0 {
		cw.store.delete(ids)
	}
}

func isObjectExists(err error) bool {
	var re *wire.RemoteError
	return errors.Is(err, objstore.ErrObjectExists) || (errors.As(err, &re) && re.Code == "exists")
}

// encodeResult encodes a call's result: inline when small, else in the
// node's store under id. The error kind says whose fault a failure is.
func (cw *coreWorker) encodeResult(ctx context.Context, id protos.ObjectID, fn string, value any) (*protos.ObjectData, protos.ErrorKind, error) {
	enc, data, err := encodeValue(value)
	if err != nil {
		return nil, protos.ErrorKind_ERROR_KIND_TASK, fmt.Errorf("encode result of %s: %w", fn, err)
	}
	if len(data) <= inlineLimit {
		return &protos.ObjectData{Encoding: enc, Data: data}, 0, nil
	}
	d, err := cw.storeValue(ctx, id, enc, data)
	if err != nil {
		return nil, protos.ErrorKind_ERROR_KIND_OBJECT_STORE_FULL, err
	}
	return d, 0, nil
}

func isStoreFull(err error) bool {
	var re *wire.RemoteError
	return errors.Is(err, objstore.ErrStoreFull) || (errors.As(err, &re) && re.Code == "store_full")
}

// createAfterGC retries a create that found the store full after a garbage
// collection: objects are freed when the collector finds their last ref
// gone, and Go's collector paces itself by the Go heap, not by the shared
// memory its refs keep alive. Cleanups run asynchronously after the
// collection, so the create is retried for a short while.
func (cw *coreWorker) createAfterGC(ctx context.Context, id protos.ObjectID, size uint64) (uint64, error) {
	runtime.GC()
	var err error
	for wait := time.Millisecond; wait < 512*time.Millisecond; wait *= 2 {
		var off uint64
		if off, err = cw.store.create(ctx, id, size); !isStoreFull(err) {
			return off, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return 0, err
}
