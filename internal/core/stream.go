package core

import (
	"context"
	"fmt"
	"io"
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

type streamState struct {
	cw       *Worker
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

func (t *streamTable) open(cw *Worker, taskID protos.TaskID) *streamState {
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
func (cw *Worker) serveStreamItem(c *wire.Conn, req *wire.Request) {
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
	cw.objects.addLocalRef(id, cw.node().addr)
	cw.objects.completeResult(id, m.GetData(), nil)
	st.mu.Lock()
	st.items = append(st.items, id)
	st.signalLocked()
	st.mu.Unlock()
	_ = c.Reply(req, &protos.StreamItemReply{})
}

// Stream is the caller's end of a streaming call.
type Stream struct {
	st *streamState
}

// streamHolder is what a Stream's cleanup keeps: the state, and the ref to
// the call's return object, so its end status stays known while the
// stream lives.
type streamHolder struct {
	st  *streamState
	ret ObjectRef
}

func newStream(st *streamState, ret ObjectRef) *Stream {
	s := &Stream{st: st}
	// Items nobody took are released with the stream.
	runtime.AddCleanup(s, func(h *streamHolder) { h.st.release() }, &streamHolder{st: st, ret: ret})
	st.watchEnd()
	return s
}

// SubmitStream starts the generator registered as name and returns its
// stream at once.
func (cw *Worker) SubmitStream(ctx context.Context, name string, args []Arg, opts CallOptions) (*Stream, error) {
	ref, err := cw.SubmitTask(ctx, name, args, opts.AsStream())
	if err != nil {
		return nil, err
	}
	taskID := ref.h.id.TaskID()
	return newStream(cw.streams.get(taskID), ref), nil
}

// CallActorStream starts generator method m on actor h.
func (cw *Worker) CallActorStream(ctx context.Context, h *ActorHandle, m Method, args []Arg) (*Stream, error) {
	m.Stream = true
	ref, err := cw.CallActor(ctx, h, m, args)
	if err != nil {
		return nil, err
	}
	taskID := ref.h.id.TaskID()
	return newStream(cw.streams.get(taskID), ref), nil
}

// Next returns a ref to the next item, waiting for it. At the end of the
// stream it returns io.EOF; if the generator failed, its error comes once
// after the items it yielded, then io.EOF.
func (s *Stream) Next(ctx context.Context) (ObjectRef, error) {
	st := s.st
	for {
		st.mu.Lock()
		if st.next < len(st.items) {
			id := st.items[st.next]
			st.items[st.next] = protos.ObjectID{}
			st.next++
			st.mu.Unlock()
			ref := newObjectRef(st.cw, id, st.cw.node().addr)
			st.cw.objects.removeLocalRef(id)
			return ref, nil
		}
		if st.done {
			defer st.mu.Unlock()
			if st.err != nil && !st.reported {
				st.reported = true
				return ObjectRef{}, st.err
			}
			return ObjectRef{}, io.EOF
		}
		ch := st.changed
		st.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ObjectRef{}, ctx.Err()
		}
	}
}

// Cancel stops the producer (see Worker.Cancel); the stream then ends with
// ErrTaskCancelled after the items already yielded.
func (s *Stream) Cancel(force, recursive bool) error {
	cw := s.st.cw
	if cw.sub.cancel(protos.ObjectIDFor(s.st.taskID, 1), force, recursive) {
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

// yielder sends a running generator's items to its caller on conn.
func (cw *Worker) yielder(ctx context.Context, conn *wire.Conn, taskID protos.TaskID, caller *protos.Address) func(any) error {
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
