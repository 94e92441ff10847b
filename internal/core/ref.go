package core

import (
	"fmt"
	"runtime"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/protos"
)

// ObjectRef is an untyped reference to an object: a future for a task's
// result or a value stored with Put. Refs are values: copy them freely,
// pass them to tasks, store them inside other values. The object stays
// alive while any ref to it is reachable.
type ObjectRef struct {
	h *refHandle
}

// refHandle is the heap object whose reachability the garbage collector
// tracks for us: when the last copy of a ref is gone, its cleanup drops the
// local reference count in the owning process's object table.
type refHandle struct {
	id    protos.ObjectID
	owner *protos.Address
	// err is set for refs that failed before reaching the runtime (for
	// example an argument that could not be encoded).
	err error
}

func newObjectRef(cw *Worker, id protos.ObjectID, owner *protos.Address) ObjectRef {
	h := &refHandle{id: id, owner: owner}
	if cw != nil {
		cw.objects.addLocalRef(id, owner)
		runtime.AddCleanup(h, func(id protos.ObjectID) { cw.objects.removeLocalRef(id) }, id)
	}
	return ObjectRef{h: h}
}

// FailedRef is a ref that failed before reaching the runtime: Get gives
// err.
func FailedRef(err error) ObjectRef { return ObjectRef{h: &refHandle{err: err}} }

// Err returns why the ref failed before reaching the runtime, if it did.
func (r ObjectRef) Err() error {
	if r.h == nil {
		return nil
	}
	return r.h.err
}

// ID returns the object's id.
func (r ObjectRef) ID() protos.ObjectID {
	if r.h == nil {
		return protos.ObjectID{}
	}
	return r.h.id
}

// String renders the ref for logs.
func (r ObjectRef) String() string {
	if r.h == nil {
		return "ObjectRef(nil)"
	}
	if r.h.err != nil {
		return fmt.Sprintf("ObjectRef(failed: %v)", r.h.err)
	}
	return fmt.Sprintf("ObjectRef(%s)", r.h.id)
}

// IsNil reports whether r is the zero ref.
func (r ObjectRef) IsNil() bool { return r.h == nil }

func (r ObjectRef) proto() *protos.ObjectRefProto {
	return &protos.ObjectRefProto{ObjectId: r.h.id.Bytes(), Owner: r.h.owner}
}

// A ref nested inside a value is encoded as its id and its owner's address,
// so the receiving process can fetch it from the owner and register as a
// borrower.
var _ msgpack.CustomEncoder = ObjectRef{}
var _ msgpack.CustomDecoder = (*ObjectRef)(nil)

// EncodeMsgpack implements msgpack.CustomEncoder.
func (r ObjectRef) EncodeMsgpack(enc *msgpack.Encoder) error {
	if r.h == nil {
		return enc.EncodeNil()
	}
	if r.h.err != nil {
		return fmt.Errorf("cannot encode a failed ref: %w", r.h.err)
	}
	if rb, ok := enc.Writer().(*refBuffer); ok {
		// Encoded by the runtime, which keeps the object alive for the
		// value's receiver (see objects.go).
		rb.refs = append(rb.refs, r)
	} else if cw := Current(); cw != nil {
		// Encoded by someone else (msgpack.Marshal in user code): the
		// runtime cannot follow the bytes, so the owner keeps the object
		// until it exits.
		cw.objects.markEscaped(r.h.id)
	}
	b, err := marshalProto(r.proto())
	if err != nil {
		return err
	}
	return enc.EncodeBytes(b)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (r *ObjectRef) DecodeMsgpack(dec *msgpack.Decoder) error {
	b, err := dec.DecodeBytes()
	if err != nil {
		return err
	}
	if b == nil {
		r.h = nil
		return nil
	}
	var p protos.ObjectRefProto
	if err := unmarshalProto(b, &p); err != nil {
		return fmt.Errorf("decode object ref: %w", err)
	}
	id, err := protos.ObjectIDFromBytes(p.GetObjectId())
	if err != nil {
		return fmt.Errorf("decode object ref: %w", err)
	}
	*r = newObjectRef(Current(), id, p.GetOwner())
	return nil
}
