package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"runtime"
	"sync"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Streaming generators: a task or actor method that yields values returns
// a Stream whose items can be consumed while it still runs (Ray's
// num_returns="streaming").
//
//	var Count = sdk.RegisterStream1("example.Count", func(ctx context.Context, n int, yield func(int) error) error {
//		for i := 0; i < n; i++ {
//			if err := yield(i); err != nil {
//				return err // the caller cancelled
//			}
//		}
//		return nil
//	})
//
//	s := Count.Remote(ctx, 3)
//	for v, err := range s.All(ctx) { ... } // 0, 1, 2
//
// An error returned by the generator reaches the consumer after the items
// yielded before it, and ends the stream. Cancelling the stream stops the
// producer: its next yield returns an error. Each item is an object of its
// own, freed when its ref is dropped. Streaming calls are not retried.

// streamWindow bounds the items a producer runs ahead of the caller's
// acknowledgements.
const streamWindow = 64

// streamIndexBase is the object index of a stream's first item; index 1 is
// the call's own return (its end status).
const streamIndexBase = 2

// Stream is the caller's end of a streaming call.
type Stream[T any] struct {
	st  *streamState
	err error
}

type streamState struct {
	cw       *coreWorker
	taskID   protos.TaskID
	mu       sync.Mutex
	items    []protos.ObjectID
	next     int
	done     bool
	err      error
	reported bool
	changed  chan struct{}
}

// streamTable finds a process's open streams by call.
type streamTable struct {
	mu sync.Mutex
	m  map[protos.TaskID]*streamState
}

func (t *streamTable) open(cw *coreWorker, taskID protos.TaskID) *streamState {
	st := &streamState{cw: cw, taskID: taskID, changed: make(chan struct{})}
	t.mu.Lock()
	if t.m == nil {
		t.m = map[protos.TaskID]*streamState{}
	}
	t.m[taskID] = st
	t.mu.Unlock()
	return st
}

func (t *streamTable) get(taskID protos.TaskID) *streamState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[taskID]
}

func (t *streamTable) remove(taskID protos.TaskID) {
	t.mu.Lock()
	delete(t.m, taskID)
	t.mu.Unlock()
}

// watchEnd ends the stream when the call's return object completes.
func (st *streamState) watchEnd() {
	id := protos.ObjectIDFor(st.taskID, 1)
	st.cw.objects.onReady(id, func() {
		_, _, terr, _ := st.cw.objects.result(id)
		st.mu.Lock()
		st.done = true
		if terr != nil {
			st.err = terr
		}
		st.signalLocked()
		st.mu.Unlock()
		st.cw.streams.remove(st.taskID)
	})
}

func (st *streamState) signalLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// serveStreamItem records an item a worker yielded.
func (cw *coreWorker) serveStreamItem(c *wire.Conn, req *wire.Request) {
	var m protos.StreamItemRequest
	if err := unmarshalProto(req.Payload, &m); err != nil {
		cw.reject(c, req, malformed(err))
		return
	}
	taskID, err := checkStreamItem(&m)
	if err != nil {
		cw.reject(c, req, err)
		return
	}
	st := cw.streams.get(taskID)
	if st == nil {
		// The caller closed the stream: the item has no reader.
		// Completing an id nobody holds frees its store copy and gives
		// back the refs nested in it.
		cw.objects.completeResult(protos.ObjectIDFor(taskID, uint32(streamIndexBase+m.GetIndex())), m.GetData(), nil)
		_ = c.Reply(req, &protos.StreamItemReply{})
		return
	}
	id := protos.ObjectIDFor(taskID, uint32(streamIndexBase+m.GetIndex()))
	cw.objects.addOwned(id)
	// The stream holds the item until Next hands out a ref to it.
	cw.objects.addLocalRef(id, cw.addr)
	cw.objects.completeResult(id, m.GetData(), nil)
	st.mu.Lock()
	st.items = append(st.items, id)
	st.signalLocked()
	st.mu.Unlock()
	_ = c.Reply(req, &protos.StreamItemReply{})
}

// Next returns a ref to the next item, waiting for it. At the end of the
// stream it returns io.EOF; if the generator failed, its error comes once
// after the items it yielded, then io.EOF.
func (s *Stream[T]) Next(ctx context.Context) (Ref[T], error) {
	if s.err != nil {
		return Ref[T]{}, s.err
	}
	st := s.st
	for {
		st.mu.Lock()
		if st.next < len(st.items) {
			id := st.items[st.next]
			st.items[st.next] = protos.ObjectID{}
			st.next++
			st.mu.Unlock()
			ref := newObjectRef(st.cw, id, st.cw.addr)
			st.cw.objects.removeLocalRef(id)
			return Ref[T]{ref}, nil
		}
		if st.done {
			defer st.mu.Unlock()
			if st.err != nil && !st.reported {
				st.reported = true
				return Ref[T]{}, st.err
			}
			return Ref[T]{}, io.EOF
		}
		ch := st.changed
		st.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Ref[T]{}, ctx.Err()
		}
	}
}

// All iterates over the stream's values (Get of each item), ending after
// the last item or at the first error.
func (s *Stream[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			ref, err := s.Next(ctx)
			if errors.Is(err, io.EOF) {
				return
			}
			var v T
			if err == nil {
				v, err = ref.Get(ctx)
			}
			if !yield(v, err) || err != nil {
				return
			}
		}
	}
}

// Cancel stops the producer (see Cancel); the stream then ends with
// ErrTaskCancelled after the items already yielded.
func (s *Stream[T]) Cancel(ctx context.Context, opts ...CancelOption) error {
	if s.err != nil {
		return s.err
	}
	cw := s.st.cw
	var o cancelOptions
	for _, f := range opts {
		f(&o)
	}
	id := protos.ObjectIDFor(s.st.taskID, 1)
	if cw.sub.cancel(id, o.force, !o.noRecursive) {
		return nil
	}
	return cw.cancelActorCall(s.st.taskID)
}

// release drops the stream's hold on items nobody took.
func (st *streamState) release() {
	st.mu.Lock()
	left := append([]protos.ObjectID(nil), st.items[st.next:]...)
	st.next = len(st.items)
	st.mu.Unlock()
	for _, id := range left {
		st.cw.objects.removeLocalRef(id)
	}
}

func newStream[T any](cw *coreWorker, taskID protos.TaskID, st *streamState, ret ObjectRef) *Stream[T] {
	s := &Stream[T]{st: st}
	// The return object's ref lives as long as the stream, so the end
	// status stays known; items nobody took are released with it.
	runtime.AddCleanup(s, func(h *streamHolder) { h.st.release() }, &streamHolder{st: st, ret: ret})
	st.watchEnd()
	return s
}

type streamHolder struct {
	st  *streamState
	ret ObjectRef
}

func failedStream[T any](err error) *Stream[T] { return &Stream[T]{err: err} }

// StreamFunc1 is a streaming remote function of one argument.
type StreamFunc1[A, T any] struct{ funcBase }

// RegisterStream1 registers a generator under name.
func RegisterStream1[A, T any](name string, fn func(context.Context, A, func(T) error) error) *StreamFunc1[A, T] {
	rf := register(name, fn, nil)
	rf.invokeStream = func(ctx context.Context, args []reflect.Value, yield func(any) error) error {
		return fn(ctx, arg[A](args[0]), func(v T) error { return yield(v) })
	}
	rf.params = rf.params[:1]
	return &StreamFunc1[A, T]{funcBase{name: name, opts: streamCallOptions()}}
}

// Remote starts the generator and returns its stream at once.
func (f *StreamFunc1[A, T]) Remote(ctx context.Context, a A) *Stream[T] {
	return submitStream[T](ctx, f.funcBase, argSource{value: a})
}

// Options returns a copy of f whose calls use opts.
func (f *StreamFunc1[A, T]) Options(opts ...CallOption) *StreamFunc1[A, T] {
	n := f.withOptions(opts)
	n.opts.stream, n.opts.maxRetries = true, 0
	return &StreamFunc1[A, T]{n}
}

func streamCallOptions() callOptions {
	o := defaultCallOptions()
	o.stream, o.maxRetries = true, 0
	return o
}

func submitStream[T any](ctx context.Context, f funcBase, args ...argSource) *Stream[T] {
	cw := current()
	if cw == nil {
		return failedStream[T](ErrNotInitialized)
	}
	ref, err := cw.submitTask(ctx, f.name, args, f.opts)
	if err != nil {
		return failedStream[T](err)
	}
	taskID := ref.h.id.TaskID()
	return newStream[T](cw, taskID, cw.streams.get(taskID), ref)
}

// yielder sends a running generator's items to its caller on conn.
func (cw *coreWorker) yielder(ctx context.Context, conn *wire.Conn, taskID protos.TaskID, caller *protos.Address) func(any) error {
	var index uint64
	window := make(chan struct{}, streamWindow)
	var mu sync.Mutex
	var sendErr error
	return func(v any) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		mu.Lock()
		err := sendErr
		mu.Unlock()
		if err != nil {
			return err
		}
		enc, err := encodeValue(v)
		if err != nil {
			return fmt.Errorf("encode stream item %d: %w", index, err)
		}
		d := enc.objectData()
		if len(enc.data) > inlineLimit {
			if d, err = cw.storeValue(ctx, protos.ObjectIDFor(taskID, uint32(streamIndexBase+index)), caller, enc); err != nil {
				return err
			}
		} else if enc.enc == protos.Encoding_ENCODING_RAW || enc.enc == protos.Encoding_ENCODING_NUMERIC {
			// Sent asynchronously: the producer may reuse its slice.
			d.Data = append([]byte(nil), enc.data...)
		}
		if d.NestedRefs, err = cw.lendTo(ctx, enc.refs, caller); err != nil {
			return err
		}
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		err = conn.Go(protos.Method_STREAM_ITEM, &protos.StreamItemRequest{TaskId: taskID.Bytes(), Index: index, Data: d}, func(_ []byte, err error) {
			<-window
			if err != nil {
				mu.Lock()
				sendErr = fmt.Errorf("the caller is gone: %w", err)
				mu.Unlock()
			}
		})
		index++
		return err
	}
}
