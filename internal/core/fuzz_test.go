package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/testconn"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet"
)

// What FuzzCoreWorkerRequest's core worker runs: functions and an actor
// whose parameters cannot carry refs (a decoded ref registers with its
// owner, at an address the input would name).
var fuzzCounter = RegisterActorClass("sdk_fuzz.Counter", reflect.TypeOf(fuzzCount{}),
	func(_ context.Context, start int) (*fuzzCount, error) { return &fuzzCount{n: start}, nil },
	func(_ context.Context, a []reflect.Value) (any, error) { return &fuzzCount{n: int(a[0].Int())}, nil })

func init() {
	RegisterFunction("sdk_fuzz.len", func(_ context.Context, b []byte) (int, error) { return len(b), nil },
		func(_ context.Context, a []reflect.Value) (any, error) { return a[0].Len(), nil })
	RegisterFunction("sdk_fuzz.add", func(_ context.Context, a, b int) (int, error) { return a + b, nil },
		func(_ context.Context, a []reflect.Value) (any, error) { return int(a[0].Int() + a[1].Int()), nil })
	RegisterStreamFunction("sdk_fuzz.count", func(_ context.Context, n int, yield func(int) error) error { return nil }, 1,
		func(_ context.Context, a []reflect.Value, yield func(any) error) error {
			for i := 0; i < min(int(a[0].Int()), 3); i++ {
				if err := yield(i); err != nil {
					return err
				}
			}
			return nil
		})
	RegisterMethod(fuzzCounter, "Inc", func(c *fuzzCount, _ context.Context, by int) (int, error) { c.n += by; return c.n, nil },
		func(_ context.Context, self any, a []reflect.Value) (any, error) {
			c := self.(*fuzzCount)
			c.n += int(a[0].Int())
			return c.n, nil
		})
	RegisterMethod(fuzzCounter, "Echo", func(_ *fuzzCount, _ context.Context, b []byte) (int, error) { return len(b), nil },
		func(_ context.Context, _ any, a []reflect.Value) (any, error) { return a[0].Len(), nil })
}

type fuzzCount struct{ n int }

// fuzzWorker is a core worker as a worker process has one, minus the
// processes around it: its store is a segment of its own, its raylet and
// the one peer it may dial (the owner or borrower the seeds name) are fakes
// in the test. It is a driver (isWorker false), so that EXIT and the kills
// that end a worker process leave the test running.
type fuzzWorker struct {
	cw    *Worker
	peer  string // the endpoint of the fake peer
	actor protos.UniqueID
	owned protos.ObjectID
	self  *protos.Address
}

func newFuzzWorker(tb testing.TB) *fuzzWorker {
	tb.Helper()
	log := zerolog.Nop()
	job, worker, node := protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()
	cw := newWorker(log, false, job, worker, auth.None(nil))
	cw.setup(func(b *nodeBinding) {
		b.id = node
		b.addr = &protos.Address{WorkerId: worker.Bytes(), NodeId: node.Bytes(), Endpoint: "unix:/nonexistent/self.sock", Pid: int32(os.Getpid())}
	})

	seg, err := objstore.CreateSegment(fmt.Sprintf("/dev/shm/goray-%d-sdkfuzz%s", os.Getpid(), protos.NewUniqueID().Short()), 1<<20)
	if err != nil {
		tb.Fatal(err)
	}
	st := objstore.NewStore(seg)
	cw.setup(func(b *nodeBinding) { b.store, b.seg = localStore{s: st, h: st.NewHolder()}, seg })

	// The raylet answers every request with an error (PULL_OBJECT: the
	// object is not there).
	a, b := net.Pipe()
	fake := wire.NewConn(a, wire.HandlerFunc(func(c *wire.Conn, req *wire.Request) {
		_ = c.ReplyError(req, wire.NewError("not_found", "fake raylet"))
	}), wire.WithLogger(log))
	rc := wire.NewConn(b, cw, wire.WithLogger(log))
	cw.setup(func(b *nodeBinding) { b.raylet = rc })

	// The peer answers ADD_BORROWERS as an owner that knows nothing, and
	// everything else with an error.
	sock := filepath.Join(tb.TempDir(), "peer.sock")
	l, err := wire.Listen("unix:" + sock)
	if err != nil {
		tb.Fatal(err)
	}
	peer := wire.NewServer(l, wire.HandlerFunc(func(c *wire.Conn, req *wire.Request) {
		if req.Method == protos.Method_ADD_BORROWERS {
			_ = c.Reply(req, &protos.BorrowReply{})
			return
		}
		_ = c.ReplyError(req, wire.NewError("not_found", "fake peer"))
	}), wire.WithLogger(log))
	go func() { _ = peer.Serve() }()

	tb.Cleanup(func() {
		cw.close()
		_ = peer.Close()
		_ = fake.Close()
		_ = st.Close()
		_ = seg.Close()
		_ = seg.Remove()
	})
	fw := &fuzzWorker{cw: cw, peer: "unix:" + sock, actor: protos.NewUniqueID(), owned: cw.nextPutID(), self: cw.node().addr}
	// An object it owns, ready, and an actor it hosts: the seeds name them.
	cw.objects.addOwned(fw.owned)
	cw.objects.addLocalRef(fw.owned, cw.node().addr)
	cw.objects.complete(fw.owned, inlineInt(42), nil)
	if rep := cw.host.construct(nil, fw.actor, fw.createActor(fw.actor, 0)); rep.GetError() != nil {
		tb.Fatalf("seed actor: %v", rep.GetError())
	}
	return fw
}

func (fw *fuzzWorker) peerAddr() *protos.Address {
	return &protos.Address{WorkerId: protos.NewUniqueID().Bytes(), NodeId: fw.self.GetNodeId(), Endpoint: fw.peer}
}

func (fw *fuzzWorker) createActor(id protos.UniqueID, restarts int32) *protos.CreateActorRequest {
	return &protos.CreateActorRequest{NumRestarts: restarts, Spec: &protos.ActorSpec{ActorId: id.Bytes(), ClassName: "sdk_fuzz.Counter",
		Args: []*protos.TaskArg{{Value: inlineInt(1)}}, Owner: fw.peerAddr(),
		Options: &protos.ActorOptions{MaxConcurrency: 2, ConcurrencyGroups: []*protos.ConcurrencyGroup{{Name: "io", MaxConcurrency: 1, Methods: []string{"Echo"}}}}}}
}

// tidy stops the actors inputs created, so that they do not pile up for
// the rest of the run (each has a goroutine).
func (fw *fuzzWorker) tidy() {
	h := fw.cw.host
	h.mu.Lock()
	var extra []*hostedActor
	for id, ha := range h.actors {
		if id != fw.actor {
			extra = append(extra, ha)
		}
	}
	h.mu.Unlock()
	for _, ha := range extra {
		h.stop(ha)
	}
}

// connect returns a connection served by the core worker, as one a peer
// dialled would be.
func (fw *fuzzWorker) connect(tb testing.TB) *wire.Conn {
	a, b := net.Pipe()
	server := wire.NewConn(a, fw.cw, wire.WithLogger(zerolog.Nop()))
	client := wire.NewConn(b, nil, wire.WithLogger(zerolog.Nop()))
	tb.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client
}

// requestMessages are the messages of the methods whose requests name
// processes (owners, callers, borrowers) the core worker may dial.
var requestMessages = map[protos.Method]func() proto.Message{
	protos.Method_PUSH_TASK:        func() proto.Message { return &protos.PushTaskRequest{} },
	protos.Method_ACTOR_CALL:       func() proto.Message { return &protos.ActorCallRequest{} },
	protos.Method_CREATE_ACTOR:     func() proto.Message { return &protos.CreateActorRequest{} },
	protos.Method_STREAM_ITEM:      func() proto.Message { return &protos.StreamItemRequest{} },
	protos.Method_ADD_BORROWERS:    func() proto.Message { return &protos.BorrowRequest{} },
	protos.Method_REMOVE_BORROWERS: func() proto.Message { return &protos.BorrowRequest{} },
}

var addressName = (&protos.Address{}).ProtoReflect().Descriptor().FullName()

// endpoints calls fn with every endpoint an Address in m names.
func endpoints(m protoreflect.Message, fn func(string)) {
	if m.Descriptor().FullName() == addressName {
		a := m.Interface().(*protos.Address)
		fn(a.GetEndpoint())
		fn(a.GetTcpEndpoint())
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				endpoints(v.List().Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				endpoints(mv.Message(), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			endpoints(v.Message(), fn)
		}
		return true
	})
}

// dialsOnlyPeer reports whether serving the request could dial only the
// test's fake peer: any other endpoint it names (a tcp host, a socket of
// some other program) stays undialled, and such a request is given to its
// decode+validate function alone.
func (fw *fuzzWorker) dialsOnlyPeer(method protos.Method, payload []byte) (ok bool, m proto.Message) {
	newMsg, named := requestMessages[method]
	if !named {
		return true, nil
	}
	m = newMsg()
	if proto.Unmarshal(payload, m) != nil {
		return true, nil // refused before anything is read
	}
	ok = true
	endpoints(m.ProtoReflect(), func(ep string) {
		if ep != "" && ep != fw.peer {
			ok = false
		}
	})
	return ok, m
}

// validate runs the decode+validate function of a request that names
// other endpoints: it must not panic.
func validate(m proto.Message) {
	switch m := m.(type) {
	case *protos.PushTaskRequest:
		_, _, _ = checkPushTask(m)
	case *protos.ActorCallRequest:
		_, _, _ = checkActorCall(m)
	case *protos.CreateActorRequest:
		_, _ = checkCreateActor(m)
	case *protos.StreamItemRequest:
		_, _ = checkStreamItem(m)
	case *protos.BorrowRequest:
		_ = checkBorrow(m)
	}
}

func (fw *fuzzWorker) seeds(tb testing.TB) []struct {
	method protos.Method
	msg    proto.Message
	oneWay bool
} {
	task, lease := protos.NewUniqueID(), protos.NewUniqueID()
	raw := &protos.ObjectData{Encoding: protos.Encoding_ENCODING_RAW, Data: []byte("hello")}
	push := func(fn string, args ...*protos.ObjectData) *protos.PushTaskRequest {
		spec := &protos.TaskSpec{TaskId: task.Bytes(), JobId: fw.cw.jobID.Bytes(), Function: fn, Owner: fw.peerAddr(), Resources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}}}
		for _, a := range args {
			spec.Args = append(spec.Args, &protos.TaskArg{Value: a})
		}
		return &protos.PushTaskRequest{LeaseId: lease.Bytes(), Spec: spec}
	}
	byRef := push("sdk_fuzz.len", raw)
	byRef.Spec.Args[0].Ref = &protos.ObjectRefProto{ObjectId: fw.owned.Bytes(), Owner: fw.self}
	inStore := push("sdk_fuzz.len", &protos.ObjectData{Encoding: protos.Encoding_ENCODING_RAW, InStore: true, NodeId: protos.NewUniqueID().Bytes(), Size: 5})
	nested := &protos.ObjectData{Encoding: protos.Encoding_ENCODING_MSGPACK, Data: inlineInt(1).GetData(),
		NestedRefs: []*protos.ObjectRefProto{{ObjectId: protos.ObjectIDFor(protos.NewUniqueID(), 1).Bytes(), Owner: fw.peerAddr()}}}
	call := func(method string, arg *protos.ObjectData) *protos.ActorCallRequest {
		return &protos.ActorCallRequest{ActorId: fw.actor.Bytes(), TaskId: protos.NewUniqueID().Bytes(), Method: method, Caller: fw.peerAddr(),
			Args: []*protos.TaskArg{{Value: arg}}}
	}
	borrow := &protos.BorrowRequest{ObjectIds: [][]byte{fw.owned.Bytes()}, Borrower: fw.peerAddr()}
	type seed = struct {
		method protos.Method
		msg    proto.Message
		oneWay bool
	}
	return []seed{
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.len", raw)},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.add", inlineInt(2), inlineInt(3))},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.count", inlineInt(5))},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.add", inlineInt(2))},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.missing")},
		{method: protos.Method_PUSH_TASK, msg: byRef},
		{method: protos.Method_PUSH_TASK, msg: inStore},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.add", inlineInt(1), nested)},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.len", &protos.ObjectData{Encoding: protos.Encoding_ENCODING_NUMERIC, NumericKind: protos.NumericKind_NUMERIC_KIND_INT32, Data: []byte{1, 2, 3}})},
		{method: protos.Method_PUSH_TASK, msg: push("sdk_fuzz.len", &protos.ObjectData{Error: &protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_TASK, Message: "upstream"}})},
		{method: protos.Method_PUSH_TASK, msg: &protos.PushTaskRequest{LeaseId: lease.Bytes()}},
		{method: protos.Method_CANCEL_TASK, msg: &protos.CancelTaskRequest{TaskId: task.Bytes(), Recursive: true}},
		{method: protos.Method_CANCEL_TASK, msg: &protos.CancelTaskRequest{TaskId: task.Bytes(), Force: true}, oneWay: true},
		{method: protos.Method_GET_OBJECT, msg: &protos.GetObjectRequest{ObjectId: fw.owned.Bytes()}},
		{method: protos.Method_GET_OBJECT, msg: &protos.GetObjectRequest{ObjectId: protos.ObjectIDFor(task, 1).Bytes()}},
		{method: protos.Method_CREATE_ACTOR, msg: fw.createActor(protos.NewUniqueID(), 0)},
		{method: protos.Method_CREATE_ACTOR, msg: fw.createActor(fw.actor, 0)},
		{method: protos.Method_ACTOR_CALL, msg: call("Inc", inlineInt(1))},
		{method: protos.Method_ACTOR_CALL, msg: call("Echo", raw)},
		{method: protos.Method_ACTOR_CALL, msg: call("Nope", raw)},
		{method: protos.Method_KILL_ACTOR, msg: &protos.KillActorRequest{ActorId: protos.NewUniqueID().Bytes(), Reason: "test"}},
		{method: protos.Method_KILL_ACTOR, msg: &protos.KillActorRequest{ActorId: []byte{1}}},
		{method: protos.Method_STREAM_ITEM, msg: &protos.StreamItemRequest{TaskId: task.Bytes(), Index: 1, Data: nested}},
		{method: protos.Method_STREAM_ITEM, msg: &protos.StreamItemRequest{TaskId: task.Bytes(), Index: math.MaxUint32 - 1, Data: raw}},
		{method: protos.Method_ADD_BORROWERS, msg: borrow},
		{method: protos.Method_REMOVE_BORROWERS, msg: borrow, oneWay: true},
		{method: protos.Method_ADD_BORROWERS, msg: &protos.BorrowRequest{ObjectIds: [][]byte{{1, 2}}, Borrower: fw.peerAddr()}},
		{method: protos.Method_GET_REFS, msg: &protos.GetRefsRequest{}},
		{method: protos.Method_EXIT, msg: &protos.ExitRequest{Reason: "test"}},
		{method: protos.Method_REGISTER_WORKER, msg: &protos.RegisterWorkerRequest{}},
		{method: protos.Method(999), msg: &protos.GetRefsRequest{}, oneWay: true},
	}
}

// fuzzAnswerTimeout bounds the answer to one request: every request the
// seeds make is answered at once, so running into it means a hang.
const fuzzAnswerTimeout = 10 * time.Second

// FuzzCoreWorkerRequest sends one request (any method, any payload, as a
// request or one-way) to a core worker's ServeWire over a connection: a
// request must be answered, with a reply or an error but not a handler
// panic, and the core worker must go on serving. A request naming an
// endpoint other than the test's fake peer only goes through its
// decode+validate function: serving it would dial whatever the input
// names.
func FuzzCoreWorkerRequest(f *testing.F) {
	fw := newFuzzWorker(f)
	for _, s := range fw.seeds(f) {
		b, err := proto.Marshal(s.msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(s.method), b, s.oneWay)
	}
	f.Add(uint16(protos.Method_PUSH_TASK), []byte{0x12, 0xff}, false)
	f.Add(uint16(protos.Method_ACTOR_CALL), []byte{0x0a, 0x10}, true)
	f.Fuzz(func(t *testing.T, method uint16, payload []byte, oneWay bool) {
		m := protos.Method(method)
		if ok, msg := fw.dialsOnlyPeer(m, payload); !ok {
			validate(msg)
			return
		}
		c := fw.connect(t)
		ctx, cancel := context.WithTimeout(context.Background(), fuzzAnswerTimeout)
		defer cancel()
		if oneWay {
			if err := c.Notify(m, testconn.RawMessage(payload)); err != nil {
				t.Fatalf("notify %v: %v", m, err)
			}
		} else {
			err := c.Call(ctx, m, testconn.RawMessage(payload), nil)
			var re *wire.RemoteError
			switch {
			case err == nil:
			case !errors.As(err, &re):
				t.Fatalf("%v: no answer: %v", m, err)
			case re.Code == wire.CodeInternal:
				t.Fatalf("%v: handler panicked: %v", m, re.Message)
			case (re.Code == raylet.CodeMalformed || re.Code == raylet.CodeTooLarge) && !strings.Contains(re.Message, m.String()):
				t.Fatalf("%v: refusal %q does not name the method", m, re.Message)
			}
		}
		if err := c.Call(ctx, protos.Method_GET_REFS, &protos.GetRefsRequest{}, &protos.GetRefsReply{}); err != nil {
			t.Fatalf("GET_REFS after %v: %v", m, err)
		}
		fw.tidy()
	})
}

// The fuzz harness's core worker serves its seeds as a worker would: it
// runs tasks and actor calls, answers for its objects, and refuses bad
// requests with the code naming the method.
func TestCoreWorkerServesRequests(t *testing.T) {
	fw := newFuzzWorker(t)
	c := fw.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seeds := fw.seeds(t)
	call := func(i int, reply proto.Message) error {
		t.Helper()
		return c.Call(ctx, seeds[i].method, seeds[i].msg, reply)
	}
	result := func(d *protos.ObjectData) string {
		if e := d.GetError(); e != nil {
			return e.GetKind().String() + ": " + e.GetMessage()
		}
		var n int
		if err := decodeInto(d, d.GetData(), &n); err != nil {
			return err.Error()
		}
		return fmt.Sprint(n)
	}
	for i, want := range map[int]string{0: "5", 1: "5", 3: "ERROR_KIND_ARGUMENT", 4: "ERROR_KIND_UNKNOWN_FUNCTION", 5: "5", 6: "ERROR_KIND_ARGUMENT", 9: "ERROR_KIND_TASK: upstream"} {
		var rep protos.PushTaskReply
		if err := call(i, &rep); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if got := result(rep.GetResult()); !strings.HasPrefix(got, want) {
			t.Errorf("seed %d: %s, want %s", i, got, want)
		}
	}
	var got protos.GetObjectReply
	if err := call(13, &got); err != nil || result(got.GetData()) != "42" {
		t.Errorf("GET_OBJECT of an owned object: %v, %v", result(got.GetData()), err)
	}
	for i, want := range map[int]string{17: "2", 18: "5", 19: "ERROR_KIND_UNKNOWN_FUNCTION"} {
		var rep protos.ActorCallReply
		if err := call(i, &rep); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if got := result(rep.GetResult()); !strings.HasPrefix(got, want) {
			t.Errorf("seed %d: %s, want %s", i, got, want)
		}
	}
	var borrowed protos.BorrowReply
	if err := call(24, &borrowed); err != nil || len(borrowed.GetUnknownIds()) != 0 {
		t.Errorf("ADD_BORROWERS of an owned object: %v unknown, %v", len(borrowed.GetUnknownIds()), err)
	}
	for i, want := range map[int]string{10: raylet.CodeInvalid, 21: raylet.CodeInvalid, 23: raylet.CodeInvalid, 26: raylet.CodeInvalid, 28: "unsupported", 29: "unsupported"} {
		var re *wire.RemoteError
		if err := call(i, nil); !errors.As(err, &re) || re.Code != want {
			t.Errorf("seed %d (%v): %v, want code %s", i, seeds[i].method, err, want)
		} else if want == raylet.CodeInvalid && !strings.HasPrefix(re.Message, seeds[i].method.String()+": ") {
			t.Errorf("seed %d: %q does not name the method", i, re.Message)
		}
	}
}
