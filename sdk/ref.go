package sdk

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/protos"
)

// ObjectRef is an untyped reference to an object: a future for a task's
// result or a value stored with Put. Refs are values: copy them freely,
// pass them to tasks, store them inside other values. The object stays
// alive while any ref to it is reachable.
type ObjectRef struct {
	r core.ObjectRef
}

// Ref is a typed ObjectRef: a future for a value of type T.
type Ref[T any] struct {
	ObjectRef
}

// AnyRef is an ObjectRef or any Ref[T]: Wait, Cancel, GetView and AsRef
// take either.
type AnyRef interface{ untyped() ObjectRef }

func (r ObjectRef) untyped() ObjectRef { return r }

// ID returns the object's id.
func (r ObjectRef) ID() ObjectID { return ObjectID(r.r.ID()) }

// String renders the ref for logs.
func (r ObjectRef) String() string { return r.r.String() }

// IsNil reports whether r is the zero ref.
func (r ObjectRef) IsNil() bool { return r.r.IsNil() }

// Get waits for the value of r (see the package function Get).
func (r Ref[T]) Get(ctx context.Context, opts ...GetOption) (T, error) {
	return Get(ctx, r, opts...)
}

// Untyped returns r as an ObjectRef.
func (r Ref[T]) Untyped() ObjectRef { return r.ObjectRef }

// AsRef converts a ref to a typed one. The type is checked when the value
// is decoded.
func AsRef[T any](r AnyRef) Ref[T] { return Ref[T]{r.untyped()} }

func failedRef[T any](err error) Ref[T] { return Ref[T]{ObjectRef{core.FailedRef(err)}} }

// A ref nested inside a value travels as its id and its owner's address,
// so the receiving process can fetch it from the owner and register as a
// borrower.
var (
	_ msgpack.CustomEncoder = ObjectRef{}
	_ msgpack.CustomDecoder = (*ObjectRef)(nil)
)

// EncodeMsgpack implements msgpack.CustomEncoder.
func (r ObjectRef) EncodeMsgpack(enc *msgpack.Encoder) error { return r.r.EncodeMsgpack(enc) }

// DecodeMsgpack implements msgpack.CustomDecoder.
func (r *ObjectRef) DecodeMsgpack(dec *msgpack.Decoder) error { return r.r.DecodeMsgpack(dec) }

// Put stores v and returns a ref to it. Values up to 100 KiB stay in this
// process's memory; larger ones go to the node's shared-memory store.
func Put[T any](ctx context.Context, v T) (Ref[T], error) {
	w := core.Current()
	if w == nil {
		return Ref[T]{}, ErrNotInitialized
	}
	r, err := w.Put(ctx, v)
	if err != nil {
		return Ref[T]{}, err
	}
	return Ref[T]{ObjectRef{r}}, nil
}

// Get waits for the value of ref. A task that failed gives a *TaskError;
// with the Timeout option, running out of time gives ErrGetTimeout.
func Get[T any](ctx context.Context, ref Ref[T], opts ...GetOption) (T, error) {
	var zero T
	w := core.Current()
	if w == nil {
		return zero, ErrNotInitialized
	}
	refs := [1]core.ObjectRef{ref.r}
	vals, err := core.GetAll[T](ctx, w, refs[:], getOpts(opts).timeout)
	if err != nil {
		return zero, publicError(err)
	}
	return vals[0], nil
}

// GetAll waits for the values of refs, in order. It fails as soon as one of
// them fails, without waiting for the others.
func GetAll[T any](ctx context.Context, refs []Ref[T], opts ...GetOption) ([]T, error) {
	w := core.Current()
	if w == nil {
		return nil, ErrNotInitialized
	}
	rs := make([]core.ObjectRef, len(refs))
	for i, r := range refs {
		rs[i] = r.r
	}
	vals, err := core.GetAll[T](ctx, w, rs, getOpts(opts).timeout)
	return vals, publicError(err)
}

// Wait returns, in input order, the refs that are ready (done or failed)
// and those that are not, once numReturns are ready or the Timeout option
// expires (then with fewer ready and no error). refs may be ObjectRefs or
// typed refs. Duplicate refs are an error; no refs give two empty lists.
func Wait[R AnyRef](ctx context.Context, refs []R, numReturns int, opts ...GetOption) (ready, notReady []R, err error) {
	w := core.Current()
	if w == nil {
		return nil, nil, ErrNotInitialized
	}
	if len(refs) == 0 {
		return []R{}, []R{}, nil
	}
	o := getOpts(opts)
	rs := make([]core.ObjectRef, len(refs))
	for i, r := range refs {
		rs[i] = r.untyped().r
	}
	done, err := w.Wait(ctx, rs, numReturns, o.timeout, !o.noFetch)
	if err != nil {
		return nil, nil, publicError(err)
	}
	ready, notReady = make([]R, 0, numReturns), make([]R, 0, len(refs)-numReturns)
	for i, r := range refs {
		if done[i] && len(ready) < numReturns {
			ready = append(ready, r)
		} else {
			notReady = append(notReady, r)
		}
	}
	return ready, notReady, nil
}

// Cancel cancels the task that returns ref, as Ray's cancel: a queued task
// never runs; a running one sees its context cancelled (or, with Force, its
// worker is killed); the tasks it submitted are cancelled too unless
// NoRecursive; Get of the ref gives ErrTaskCancelled and tasks that take it
// as an argument fail. Only the owner (the submitter) can cancel.
func Cancel(ctx context.Context, ref AnyRef, opts ...CancelOption) error {
	w := core.Current()
	if w == nil {
		return ErrNotInitialized
	}
	var o cancelOptions
	for _, f := range opts {
		f(&o)
	}
	return w.Cancel(ref.untyped().r, o.force, !o.noRecursive)
}

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
	v *core.View
}

// GetView waits for ref and returns a view of its encoded bytes: the raw
// bytes of a []byte value, the elements of a numeric slice, or the encoded
// form (msgpack, protobuf) of other values. Values small enough to travel
// inline are returned as they are, without a pin.
func GetView(ctx context.Context, ref AnyRef, opts ...GetOption) (*View, error) {
	w := core.Current()
	if w == nil {
		return nil, ErrNotInitialized
	}
	v, err := w.GetView(ctx, ref.untyped().r, getOpts(opts).timeout)
	if err != nil {
		return nil, publicError(err)
	}
	return &View{v}, nil
}

// Bytes returns the viewed bytes. They are shared memory: do not modify
// them, and do not use them after Release.
func (v *View) Bytes() []byte { return v.v.Bytes() }

// Encoding says how the bytes encode the value: "raw" ([]byte),
// "numeric" (a slice of numbers, little-endian), "msgpack" or "protobuf".
func (v *View) Encoding() string {
	switch v.v.Encoding() {
	case protos.Encoding_ENCODING_RAW:
		return "raw"
	case protos.Encoding_ENCODING_NUMERIC:
		return "numeric"
	case protos.Encoding_ENCODING_MSGPACK:
		return "msgpack"
	case protos.Encoding_ENCODING_PROTOBUF:
		return "protobuf"
	}
	return fmt.Sprint(v.v.Encoding())
}

// Release unpins the object. It is safe to call more than once.
func (v *View) Release() { v.v.Release() }
