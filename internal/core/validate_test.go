package core

import (
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

var (
	tid   = protos.NewUniqueID().Bytes()
	oid   = protos.ObjectIDFor(protos.NewUniqueID(), 1).Bytes()
	zeroU = make([]byte, protos.UniqueIDSize)
)

func validAddr() *protos.Address {
	return &protos.Address{WorkerId: protos.NewUniqueID().Bytes(), NodeId: protos.NewUniqueID().Bytes(), Endpoint: "unix:/tmp/w.sock", TcpEndpoint: "tcp:127.0.0.1:7"}
}

func inlineInt(v int) *protos.ObjectData {
	enc, err := encodeValue(v)
	if err != nil {
		panic(err)
	}
	return enc.objectData()
}

// wantRefusal checks err against a table row: nil when code is "", else
// an error answered with code whose message names the method and field.
func wantRefusal(t *testing.T, name string, err error, code, field string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: accepted, want %s", name, code)
		return
	}
	re := raylet.RequestError(protos.Method_PUSH_TASK, err)
	if re.Code != code {
		t.Errorf("%s: code %q, want %q (%v)", name, re.Code, code, err)
	}
	if !strings.HasPrefix(re.Message, "PUSH_TASK: ") || !strings.Contains(re.Message, field) {
		t.Errorf("%s: message %q does not name the method and %q", name, re.Message, field)
	}
}

func TestCheckPushTask(t *testing.T) {
	valid := func() *protos.PushTaskRequest {
		return &protos.PushTaskRequest{LeaseId: tid, Spec: &protos.TaskSpec{
			TaskId: tid, JobId: tid, Function: "f", Attempt: 1, Owner: validAddr(),
			Resources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}},
			Args: []*protos.TaskArg{
				{Value: inlineInt(1)},
				{Value: &protos.ObjectData{InStore: true, NodeId: tid, Size: 5}, Ref: &protos.ObjectRefProto{ObjectId: oid, Owner: validAddr()}},
				{Value: &protos.ObjectData{Encoding: protos.Encoding_ENCODING_NUMERIC, NumericKind: protos.NumericKind_NUMERIC_KIND_FLOAT64, Data: make([]byte, 8),
					NestedRefs: []*protos.ObjectRefProto{{ObjectId: oid, Owner: validAddr()}}}},
				{Value: &protos.ObjectData{Error: &protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_TASK}}},
			},
		}}
	}
	for _, tc := range []struct {
		name        string
		edit        func(*protos.PushTaskRequest)
		code, field string
	}{
		{name: "valid", edit: func(*protos.PushTaskRequest) {}},
		{name: "minimal", edit: func(m *protos.PushTaskRequest) { m.Spec = &protos.TaskSpec{TaskId: tid, Function: "f"} }},
		{name: "no lease", edit: func(m *protos.PushTaskRequest) { m.LeaseId = nil }, code: raylet.CodeInvalid, field: "lease_id"},
		{name: "zero lease", edit: func(m *protos.PushTaskRequest) { m.LeaseId = zeroU }, code: raylet.CodeInvalid, field: "lease_id"},
		{name: "no spec", edit: func(m *protos.PushTaskRequest) { m.Spec = nil }, code: raylet.CodeInvalid, field: "spec"},
		{name: "short task id", edit: func(m *protos.PushTaskRequest) { m.Spec.TaskId = tid[:15] }, code: raylet.CodeInvalid, field: "spec.task_id"},
		{name: "no function", edit: func(m *protos.PushTaskRequest) { m.Spec.Function = "" }, code: raylet.CodeInvalid, field: "spec.function"},
		{name: "negative attempt", edit: func(m *protos.PushTaskRequest) { m.Spec.Attempt = -1 }, code: raylet.CodeInvalid, field: "spec.attempt"},
		{name: "bad job", edit: func(m *protos.PushTaskRequest) { m.Spec.JobId = oid }, code: raylet.CodeInvalid, field: "spec.job_id"},
		{name: "NaN CPU", edit: func(m *protos.PushTaskRequest) { m.Spec.Resources.Amounts["CPU"] = math.NaN() }, code: raylet.CodeInvalid, field: "spec.resources"},
		{name: "huge CPU", edit: func(m *protos.PushTaskRequest) { m.Spec.Resources.Amounts["CPU"] = 1e300 }, code: raylet.CodeInvalid, field: "spec.resources"},
		{name: "owner without id", edit: func(m *protos.PushTaskRequest) { m.Spec.Owner.WorkerId = nil }, code: raylet.CodeInvalid, field: "spec.owner.worker_id"},
		{name: "owner bad endpoint", edit: func(m *protos.PushTaskRequest) { m.Spec.Owner.Endpoint = "w.sock" }, code: raylet.CodeInvalid, field: "spec.owner.endpoint"},
		{name: "owner bad node", edit: func(m *protos.PushTaskRequest) { m.Spec.Owner.NodeId = []byte{1} }, code: raylet.CodeInvalid, field: "spec.owner.node_id"},
		{name: "arg without value", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[0].Value = nil }, code: raylet.CodeInvalid, field: "args"},
		{name: "unknown encoding", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[0].Value.Encoding = 77 }, code: raylet.CodeInvalid, field: "args.value.encoding"},
		{name: "unknown numeric kind", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[2].Value.NumericKind = -4 }, code: raylet.CodeInvalid, field: "numeric_kind"},
		{name: "in store, no node", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[1].Value.NodeId = nil }, code: raylet.CodeInvalid, field: "args.value.node_id"},
		{name: "ref without owner", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[1].Ref.Owner = nil }, code: raylet.CodeInvalid, field: "args.ref.owner"},
		{name: "ref bad id", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[1].Ref.ObjectId = tid }, code: raylet.CodeInvalid, field: "args.ref.object_id"},
		{name: "nested ref bad owner", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[2].Value.NestedRefs[0].Owner.TcpEndpoint = "x" }, code: raylet.CodeInvalid, field: "nested_refs.owner.tcp_endpoint"},
		{name: "unknown error kind", edit: func(m *protos.PushTaskRequest) { m.Spec.Args[3].Value.Error.Kind = 1000 }, code: raylet.CodeInvalid, field: "error.kind"},
		{name: "too many args", edit: func(m *protos.PushTaskRequest) {
			m.Spec.Args = make([]*protos.TaskArg, maxTaskArgs+1)
		}, code: raylet.CodeTooLarge, field: "args"},
	} {
		m := valid()
		tc.edit(m)
		_, _, err := checkPushTask(m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckActorCall(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           *protos.ActorCallRequest
		code, field string
	}{
		{name: "valid", m: &protos.ActorCallRequest{ActorId: tid, TaskId: tid, Method: "Inc", Caller: validAddr(), Args: []*protos.TaskArg{{Value: inlineInt(2)}}}},
		{name: "no actor", m: &protos.ActorCallRequest{TaskId: tid, Method: "Inc"}, code: raylet.CodeInvalid, field: "actor_id"},
		{name: "no task", m: &protos.ActorCallRequest{ActorId: tid, Method: "Inc"}, code: raylet.CodeInvalid, field: "task_id"},
		{name: "no method", m: &protos.ActorCallRequest{ActorId: tid, TaskId: tid}, code: raylet.CodeInvalid, field: "method"},
		{name: "negative attempt", m: &protos.ActorCallRequest{ActorId: tid, TaskId: tid, Method: "Inc", Attempt: -2}, code: raylet.CodeInvalid, field: "attempt"},
		{name: "bad caller", m: &protos.ActorCallRequest{ActorId: tid, TaskId: tid, Method: "Inc", Caller: &protos.Address{}}, code: raylet.CodeInvalid, field: "caller.worker_id"},
	} {
		_, _, err := checkActorCall(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckCreateActor(t *testing.T) {
	spec := func(opts *protos.ActorOptions) *protos.CreateActorRequest {
		return &protos.CreateActorRequest{Spec: &protos.ActorSpec{ActorId: tid, ClassName: "C", Owner: validAddr(), Options: opts}}
	}
	group := func(name string, n int32) *protos.ConcurrencyGroup {
		return &protos.ConcurrencyGroup{Name: name, MaxConcurrency: n, Methods: []string{"m"}}
	}
	for _, tc := range []struct {
		name        string
		m           *protos.CreateActorRequest
		code, field string
	}{
		{name: "valid", m: spec(&protos.ActorOptions{MaxConcurrency: 4, ConcurrencyGroups: []*protos.ConcurrencyGroup{group("io", 2), group("cpu", 0)}})},
		{name: "no options", m: spec(nil)},
		{name: "no spec", m: &protos.CreateActorRequest{}, code: raylet.CodeInvalid, field: "spec"},
		{name: "no actor id", m: &protos.CreateActorRequest{Spec: &protos.ActorSpec{ClassName: "C"}}, code: raylet.CodeInvalid, field: "spec.actor_id"},
		{name: "no class", m: &protos.CreateActorRequest{Spec: &protos.ActorSpec{ActorId: tid}}, code: raylet.CodeInvalid, field: "spec.class_name"},
		{name: "negative restarts", m: func() *protos.CreateActorRequest { m := spec(nil); m.NumRestarts = -1; return m }(), code: raylet.CodeInvalid, field: "num_restarts"},
		{name: "negative concurrency", m: spec(&protos.ActorOptions{MaxConcurrency: -5}), code: raylet.CodeInvalid, field: "max_concurrency"},
		{name: "unnamed group", m: spec(&protos.ActorOptions{ConcurrencyGroups: []*protos.ConcurrencyGroup{group("", 1)}}), code: raylet.CodeInvalid, field: "concurrency_groups"},
		{name: "repeated group", m: spec(&protos.ActorOptions{ConcurrencyGroups: []*protos.ConcurrencyGroup{group("a", 1), group("a", 2)}}), code: raylet.CodeInvalid, field: "twice"},
		{name: "negative group", m: spec(&protos.ActorOptions{ConcurrencyGroups: []*protos.ConcurrencyGroup{group("a", -1)}}), code: raylet.CodeInvalid, field: "concurrency_groups"},
		{name: "too many groups", m: spec(&protos.ActorOptions{ConcurrencyGroups: make([]*protos.ConcurrencyGroup, maxConcurrencyGroups+1)}), code: raylet.CodeTooLarge, field: "concurrency_groups"},
	} {
		_, err := checkCreateActor(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckStreamItem(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           *protos.StreamItemRequest
		code, field string
	}{
		{name: "valid", m: &protos.StreamItemRequest{TaskId: tid, Index: 3, Data: inlineInt(3)}},
		{name: "last index", m: &protos.StreamItemRequest{TaskId: tid, Index: maxStreamIndex}},
		// Item index MaxUint32-1 would be object index 1: the call's own
		// return, which ends the stream.
		{name: "index wrapping onto the return", m: &protos.StreamItemRequest{TaskId: tid, Index: math.MaxUint32 - 1}, code: raylet.CodeInvalid, field: "index"},
		{name: "huge index", m: &protos.StreamItemRequest{TaskId: tid, Index: math.MaxUint64}, code: raylet.CodeInvalid, field: "index"},
		{name: "no task", m: &protos.StreamItemRequest{}, code: raylet.CodeInvalid, field: "task_id"},
		{name: "bad data", m: &protos.StreamItemRequest{TaskId: tid, Data: &protos.ObjectData{InStore: true}}, code: raylet.CodeInvalid, field: "data.node_id"},
	} {
		_, err := checkStreamItem(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckBorrow(t *testing.T) {
	many := make([][]byte, raylet.MaxObjectIDsPerRequest+1)
	for i := range many {
		many[i] = oid
	}
	for _, tc := range []struct {
		name        string
		m           *protos.BorrowRequest
		code, field string
	}{
		{name: "valid", m: &protos.BorrowRequest{ObjectIds: [][]byte{oid}, Borrower: validAddr()}},
		{name: "no ids", m: &protos.BorrowRequest{Borrower: validAddr()}},
		{name: "no borrower", m: &protos.BorrowRequest{ObjectIds: [][]byte{oid}}, code: raylet.CodeInvalid, field: "borrower"},
		{name: "borrower without endpoint", m: &protos.BorrowRequest{Borrower: &protos.Address{WorkerId: tid}}, code: raylet.CodeInvalid, field: "borrower.endpoint"},
		{name: "bad id", m: &protos.BorrowRequest{ObjectIds: [][]byte{oid, tid}, Borrower: validAddr()}, code: raylet.CodeInvalid, field: "object_ids"},
		{name: "too many", m: &protos.BorrowRequest{ObjectIds: many, Borrower: validAddr()}, code: raylet.CodeTooLarge, field: "object_ids"},
	} {
		wantRefusal(t, tc.name, checkBorrow(tc.m), tc.code, tc.field)
	}
}

// PUSH_TASK and ACTOR_CALL run for every task: accepting a valid one must
// cost no allocation.
func TestValidationAllocatesNothing(t *testing.T) {
	push := &protos.PushTaskRequest{LeaseId: tid, Spec: &protos.TaskSpec{TaskId: tid, Function: "f", Owner: validAddr(),
		Resources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}},
		Args:      []*protos.TaskArg{{Value: inlineInt(1)}, {Value: &protos.ObjectData{InStore: true, NodeId: tid}, Ref: &protos.ObjectRefProto{ObjectId: oid, Owner: validAddr()}}}}}
	call := &protos.ActorCallRequest{ActorId: tid, TaskId: tid, Method: "Inc", Caller: validAddr(), Args: []*protos.TaskArg{{Value: inlineInt(2)}}}
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := checkPushTask(push); err != nil {
			t.Fatal(err)
		}
		if _, _, err := checkActorCall(call); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("validating valid requests allocates %v times", n)
	}
}

func TestInChunks(t *testing.T) {
	const max = raylet.MaxObjectIDsPerRequest
	for _, n := range []int{0, 1, max, max + 1, 3*max - 1} {
		var sizes []int
		total := 0
		inChunks(make([]protos.ObjectID, n), func(ids []protos.ObjectID) {
			sizes = append(sizes, len(ids))
			total += len(ids)
			if len(ids) == 0 || len(ids) > max {
				t.Errorf("%d ids: a chunk of %d", n, len(ids))
			}
		})
		if total != n || len(sizes) != (n+max-1)/max {
			t.Errorf("%d ids: chunks %v", n, sizes)
		}
	}
}

func TestRememberedCancelsBounded(t *testing.T) {
	e := newExecutor(nil)
	for i := 0; i < 3*maxRememberedCancels; i++ {
		e.rememberCancelLocked(protos.NewUniqueID())
	}
	last := protos.NewUniqueID()
	e.rememberCancelLocked(last)
	if len(e.cancelled) > maxRememberedCancels || !e.cancelled[last] {
		t.Fatalf("%d cancellations kept (latest kept: %v)", len(e.cancelled), e.cancelled[last])
	}
}

func TestEnsureProcsCapped(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	for _, n := range []float64{math.NaN(), math.Inf(1), -1, 1e18} {
		ensureProcs(n)
		if got := runtime.GOMAXPROCS(0); got > runtime.NumCPU() {
			t.Errorf("ensureProcs(%v): GOMAXPROCS %d on %d CPUs", n, got, runtime.NumCPU())
		}
	}
}
