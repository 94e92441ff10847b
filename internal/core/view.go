package core

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/goray/goray/protos"
)

// View is a pinned, zero-copy view of an object's bytes. While a View is
// unreleased the object stays where it is in the node's shared memory:
// it is neither spilled nor freed, even if every ref to it is dropped.
// Release it when done reading; a View that becomes unreachable without
// Release is released by the garbage collector, but only Release says when.
//
// Use a View, rather than Get, to read many large objects in turn: Get of
// a []byte keeps its object pinned for as long as this process holds a ref
// to it, which can fill the store with pinned objects.
type View struct {
	b       []byte
	data    *protos.ObjectData
	release func() // nil when nothing is pinned
	cleanup runtime.Cleanup
}

// Bytes returns the viewed bytes. They are shared memory: do not modify
// them, and do not use them after Release.
// GetView waits for ref and returns a view of its encoded bytes: the raw
// bytes of a []byte value, the elements of a numeric slice, or the encoded
// form (msgpack, protobuf) of other values. Values small enough to travel
// inline are returned as they are, without a pin.
func (cw *Worker) GetView(ctx context.Context, ref ObjectRef, timeout time.Duration) (*View, error) {
	if ref.h == nil || ref.h.err != nil {
		return nil, fmt.Errorf("%w: GetView of a nil or failed ref", ErrArgument)
	}
	id := ref.h.id
	if _, err := cw.wait(ctx, []protos.ObjectID{id}, 1, timeout, true); err != nil {
		return nil, err
	}
	_, data, terr, known := cw.objects.result(id)
	if !known {
		return nil, fmt.Errorf("%w: object %s", ErrObjectLost, id)
	}
	if terr != nil {
		return nil, terr
	}
	b, pinned, err := cw.readData(ctx, id, data, nil)
	if err != nil {
		return nil, err
	}
	v := &View{b: b, data: data}
	if pinned {
		once := new(atomic.Bool) // not inside v: the cleanup holds it
		v.release = func() {
			if once.CompareAndSwap(false, true) {
				cw.releasePins([]protos.ObjectID{id})
			}
		}
		// The cleanup must not reach v itself, or v would never become
		// unreachable.
		v.cleanup = runtime.AddCleanup(v, func(release func()) { release() }, v.release)
	}
	runtime.KeepAlive(ref)
	return v, nil
}

func (v *View) Bytes() []byte { return v.b }

// Encoding says how the bytes encode the value (raw, numeric, msgpack,
// protobuf).
func (v *View) Encoding() protos.Encoding { return v.data.GetEncoding() }

// Release unpins the object. It is safe to call more than once.
func (v *View) Release() {
	if v.release != nil {
		v.cleanup.Stop()
		v.release()
	}
}
