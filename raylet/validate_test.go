package raylet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/testconn"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// wantRefusal checks err against a table row: nil when code is "", else an
// error RequestError answers with code and a message naming the method
// and containing field.
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
	re := RequestError(protos.Method_CREATE_OBJECT, err)
	if re.Code != code {
		t.Errorf("%s: code %q, want %q (%v)", name, re.Code, code, err)
	}
	if !strings.HasPrefix(re.Message, "CREATE_OBJECT: ") || !strings.Contains(re.Message, field) {
		t.Errorf("%s: message %q does not name the method and %q", name, re.Message, field)
	}
}

var (
	oid   = protos.ObjectIDFor(protos.NewUniqueID(), 1).Bytes()
	uid   = protos.NewUniqueID().Bytes()
	zeroO = make([]byte, protos.ObjectIDSize)
	zeroU = make([]byte, protos.UniqueIDSize)
)

func TestCheckCreateObject(t *testing.T) {
	const capacity = 1 << 20
	for _, tc := range []struct {
		name        string
		m           *protos.CreateObjectRequest
		code, field string
	}{
		{name: "valid", m: &protos.CreateObjectRequest{ObjectId: oid, Size: 10, OwnerWorkerId: uid}},
		{name: "no owner", m: &protos.CreateObjectRequest{ObjectId: oid, Size: 10}},
		{name: "zero owner (none)", m: &protos.CreateObjectRequest{ObjectId: oid, OwnerWorkerId: zeroU}},
		{name: "whole store", m: &protos.CreateObjectRequest{ObjectId: oid, Size: capacity}},
		{name: "no id", m: &protos.CreateObjectRequest{Size: 1}, code: CodeInvalid, field: "object_id"},
		{name: "short id", m: &protos.CreateObjectRequest{ObjectId: oid[:5]}, code: CodeInvalid, field: "object_id"},
		{name: "zero id", m: &protos.CreateObjectRequest{ObjectId: zeroO}, code: CodeInvalid, field: "object_id"},
		{name: "unique id as object id", m: &protos.CreateObjectRequest{ObjectId: uid}, code: CodeInvalid, field: "object_id"},
		{name: "short owner", m: &protos.CreateObjectRequest{ObjectId: oid, OwnerWorkerId: uid[:3]}, code: CodeInvalid, field: "owner_worker_id"},
		{name: "beyond the store", m: &protos.CreateObjectRequest{ObjectId: oid, Size: capacity + 1}, code: CodeTooLarge, field: "size"},
		{name: "max size", m: &protos.CreateObjectRequest{ObjectId: oid, Size: math.MaxUint64}, code: CodeTooLarge, field: "size"},
	} {
		_, _, err := checkCreateObject(tc.m, capacity)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckPullObject(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           *protos.PullObjectRequest
		code, field string
	}{
		{name: "valid", m: &protos.PullObjectRequest{ObjectId: oid, NodeId: uid, OwnerWorkerId: uid, Size: 5}},
		{name: "no node", m: &protos.PullObjectRequest{ObjectId: oid}, code: CodeInvalid, field: "node_id"},
		{name: "bad owner", m: &protos.PullObjectRequest{ObjectId: oid, NodeId: uid, OwnerWorkerId: []byte{1}}, code: CodeInvalid, field: "owner_worker_id"},
		{name: "too large", m: &protos.PullObjectRequest{ObjectId: oid, NodeId: uid, Size: 1 << 40}, code: CodeTooLarge, field: "size"},
	} {
		_, _, _, err := checkPullObject(tc.m, 1<<20)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckObjectIDs(t *testing.T) {
	many := make([][]byte, MaxObjectIDsPerRequest+1)
	for i := range many {
		many[i] = oid
	}
	for _, tc := range []struct {
		name        string
		ids         [][]byte
		code, field string
	}{
		{name: "none", ids: nil},
		{name: "valid", ids: [][]byte{oid, oid}},
		{name: "at the limit", ids: many[:MaxObjectIDsPerRequest]},
		{name: "over the limit", ids: many, code: CodeTooLarge, field: "object_ids"},
		{name: "short", ids: [][]byte{oid, oid[:19]}, code: CodeInvalid, field: "id 1 has 19 bytes"},
		{name: "empty", ids: [][]byte{{}}, code: CodeInvalid, field: "id 0 has 0 bytes"},
		{name: "zero", ids: [][]byte{zeroO}, code: CodeInvalid, field: "zero"},
	} {
		wantRefusal(t, tc.name, CheckObjectIDs("object_ids", tc.ids), tc.code, tc.field)
	}
}

func TestCheckRegisterClient(t *testing.T) {
	base := func() *protos.RegisterClientRequest {
		return &protos.RegisterClientRequest{JobId: uid, Executable: "/bin/true", WorkerId: uid, Env: []string{"A=1", "B="}, WorkingDir: "/tmp"}
	}
	for _, tc := range []struct {
		name        string
		edit        func(*protos.RegisterClientRequest)
		code, field string
	}{
		{name: "valid", edit: func(*protos.RegisterClientRequest) {}},
		{name: "no driver id", edit: func(m *protos.RegisterClientRequest) { m.WorkerId = nil }},
		{name: "no job", edit: func(m *protos.RegisterClientRequest) { m.JobId = nil }, code: CodeInvalid, field: "job_id"},
		{name: "zero job", edit: func(m *protos.RegisterClientRequest) { m.JobId = zeroU }, code: CodeInvalid, field: "job_id"},
		{name: "long driver id", edit: func(m *protos.RegisterClientRequest) { m.WorkerId = oid }, code: CodeInvalid, field: "worker_id"},
		{name: "NUL in executable", edit: func(m *protos.RegisterClientRequest) { m.Executable = "/bin/true\x00x" }, code: CodeInvalid, field: "executable"},
		{name: "NUL in dir", edit: func(m *protos.RegisterClientRequest) { m.WorkingDir = "/\x00" }, code: CodeInvalid, field: "working_dir"},
		{name: "env without =", edit: func(m *protos.RegisterClientRequest) { m.Env = []string{"A=1", "B"} }, code: CodeInvalid, field: "entry 1"},
		{name: "env without name", edit: func(m *protos.RegisterClientRequest) { m.Env = []string{"=1"} }, code: CodeInvalid, field: "env"},
		{name: "NUL in env", edit: func(m *protos.RegisterClientRequest) { m.Env = []string{"A=\x00"} }, code: CodeInvalid, field: "env"},
		{name: "env too long", edit: func(m *protos.RegisterClientRequest) { m.Env = make([]string, maxEnvEntries+1) }, code: CodeTooLarge, field: "env"},
	} {
		m := base()
		tc.edit(m)
		_, _, err := checkRegisterClient(m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, code string
	}{
		{path: exe},
		{path: ""},
		{path: "/nonexistent/binary"}, // fails the job's worker start instead
		{path: "/dev/zero", code: CodeInvalid},
		{path: t.TempDir(), code: CodeInvalid},
	} {
		wantRefusal(t, tc.path, checkExecutable(tc.path), tc.code, "executable")
	}
}

func TestCheckRegisterWorker(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           *protos.RegisterWorkerRequest
		code, field string
	}{
		{name: "valid", m: &protos.RegisterWorkerRequest{WorkerId: uid, JobId: uid, Pid: 7, Endpoint: "unix:/tmp/w.sock", TcpEndpoint: "tcp:127.0.0.1:5"}},
		{name: "bare (as the tests' fake workers)", m: &protos.RegisterWorkerRequest{WorkerId: uid, Pid: 7}},
		{name: "no id", m: &protos.RegisterWorkerRequest{}, code: CodeInvalid, field: "worker_id"},
		{name: "bad job", m: &protos.RegisterWorkerRequest{WorkerId: uid, JobId: []byte{1, 2}}, code: CodeInvalid, field: "job_id"},
		{name: "negative pid", m: &protos.RegisterWorkerRequest{WorkerId: uid, Pid: -1}, code: CodeInvalid, field: "pid"},
		{name: "bad endpoint", m: &protos.RegisterWorkerRequest{WorkerId: uid, Endpoint: "/tmp/w.sock"}, code: CodeInvalid, field: "endpoint"},
		{name: "bad tcp endpoint", m: &protos.RegisterWorkerRequest{WorkerId: uid, TcpEndpoint: "udp:1.2.3.4:5"}, code: CodeInvalid, field: "tcp_endpoint"},
	} {
		_, _, err := checkRegisterWorker(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func amounts(m map[string]float64) *protos.Resources { return &protos.Resources{Amounts: m} }

func TestCheckLeaseRequest(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           *protos.RequestWorkerLeaseRequest
		code, field string
	}{
		{name: "valid", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Resources: amounts(map[string]float64{CPU: 1}), PreferredNodeId: uid}},
		{name: "no resources", m: &protos.RequestWorkerLeaseRequest{JobId: uid}},
		{name: "actor", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Dedicated: true, Detached: true, RunningResources: amounts(map[string]float64{CPU: 0})}},
		{name: "task ignores running resources", m: &protos.RequestWorkerLeaseRequest{JobId: uid, RunningResources: amounts(map[string]float64{CPU: -1})}},
		{name: "no job", m: &protos.RequestWorkerLeaseRequest{}, code: CodeInvalid, field: "job_id"},
		{name: "bad preferred node", m: &protos.RequestWorkerLeaseRequest{JobId: uid, PreferredNodeId: oid}, code: CodeInvalid, field: "preferred_node_id"},
		{name: "NaN", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Resources: amounts(map[string]float64{CPU: math.NaN()})}, code: CodeInvalid, field: "resources"},
		{name: "infinite", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Resources: amounts(map[string]float64{GPU: math.Inf(1)})}, code: CodeInvalid, field: "resources"},
		{name: "negative", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Resources: amounts(map[string]float64{CPU: -0.5})}, code: CodeInvalid, field: "resources"},
		{name: "huge", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Resources: amounts(map[string]float64{CPU: 1e300})}, code: CodeInvalid, field: "resources"},
		{name: "bad running", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Dedicated: true, RunningResources: amounts(map[string]float64{"": 1})}, code: CodeInvalid, field: "running_resources"},
		{name: "detached task", m: &protos.RequestWorkerLeaseRequest{JobId: uid, Detached: true}, code: CodeInvalid, field: "detached"},
	} {
		_, err := checkLeaseRequest(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestFromProtoBounds(t *testing.T) {
	many := map[string]float64{}
	for i := 0; i <= maxResourceNames; i++ {
		many[fmt.Sprintf("r%d", i)] = 1
	}
	for _, tc := range []struct {
		name string
		m    map[string]float64
		ok   bool
	}{
		{name: "fractions", m: map[string]float64{CPU: 0.5, "memory": 1e12}, ok: true},
		{name: "the largest quantity", m: map[string]float64{CPU: MaxResourceQuantity}, ok: true},
		{name: "below resolution drops", m: map[string]float64{CPU: 1e-9}, ok: true},
		{name: "beyond the largest", m: map[string]float64{CPU: MaxResourceQuantity * 1.01}},
		{name: "would overflow fixed point", m: map[string]float64{CPU: 1e15}},
		{name: "NaN", m: map[string]float64{CPU: math.NaN()}},
		{name: "-Inf", m: map[string]float64{CPU: math.Inf(-1)}},
		{name: "negative", m: map[string]float64{CPU: -1}},
		{name: "empty name", m: map[string]float64{"": 1}},
		{name: "long name", m: map[string]float64{strings.Repeat("n", maxResourceNameLen+1): 1}},
	} {
		rs, err := FromProto(amounts(tc.m))
		if tc.ok != (err == nil) {
			t.Errorf("%s: FromProto = %v, %v", tc.name, rs, err)
		}
		if err != nil && !errors.Is(err, ErrBadResources) {
			t.Errorf("%s: %v does not wrap ErrBadResources", tc.name, err)
		}
		if cerr := CheckAmounts(amounts(tc.m)); (cerr == nil) != (err == nil) {
			t.Errorf("%s: CheckAmounts = %v, FromProto = %v", tc.name, cerr, err)
		}
		for k, v := range rs {
			if v <= 0 {
				t.Errorf("%s: %s = %d", tc.name, k, v)
			}
		}
	}
	if _, err := FromProto(amounts(many)); !errors.Is(err, ErrBadResources) {
		t.Errorf("%d names: %v", len(many), err)
	}
}

func TestCheckPrepareBundles(t *testing.T) {
	cpu := func(v float64) *protos.Resources { return amounts(map[string]float64{CPU: v}) }
	many := make([]*protos.BundleReservation, maxBundlesPerRequest+1)
	for i := range many {
		many[i] = &protos.BundleReservation{Index: int32(i), Resources: cpu(1)}
	}
	for _, tc := range []struct {
		name        string
		m           *protos.PrepareBundlesRequest
		code, field string
	}{
		{name: "valid", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: []*protos.BundleReservation{{Index: 0, Resources: cpu(1)}, {Index: 3, Resources: cpu(2)}}}},
		{name: "none", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid}},
		{name: "no group", m: &protos.PrepareBundlesRequest{}, code: CodeInvalid, field: "placement_group_id"},
		{name: "negative index", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: []*protos.BundleReservation{{Index: -1, Resources: cpu(1)}}}, code: CodeInvalid, field: "negative"},
		{name: "repeated index", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: []*protos.BundleReservation{{Index: 1, Resources: cpu(1)}, {Index: 1, Resources: cpu(1)}}}, code: CodeInvalid, field: "twice"},
		{name: "empty bundle", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: []*protos.BundleReservation{{Index: 0}}}, code: CodeInvalid, field: "bundles[0].resources"},
		{name: "bad quantity", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: []*protos.BundleReservation{{Index: 2, Resources: cpu(math.NaN())}}}, code: CodeInvalid, field: "bundles[2].resources"},
		{name: "sum overflows", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: func() []*protos.BundleReservation {
			var bs []*protos.BundleReservation
			for i := 0; i < 1000; i++ {
				bs = append(bs, &protos.BundleReservation{Index: int32(i), Resources: cpu(MaxResourceQuantity)})
			}
			return bs
		}()}, code: CodeTooLarge, field: "bundles"},
		{name: "too many", m: &protos.PrepareBundlesRequest{PlacementGroupId: uid, Bundles: many}, code: CodeTooLarge, field: "bundles"},
	} {
		_, err := checkPrepareBundles(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestCheckCancelBundles(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           *protos.CancelBundlesRequest
		code, field string
	}{
		{name: "all", m: &protos.CancelBundlesRequest{PlacementGroupId: uid}},
		{name: "some", m: &protos.CancelBundlesRequest{PlacementGroupId: uid, Indexes: []int32{0, 2}}},
		{name: "no group", m: &protos.CancelBundlesRequest{PlacementGroupId: uid[:4]}, code: CodeInvalid, field: "placement_group_id"},
		{name: "negative", m: &protos.CancelBundlesRequest{PlacementGroupId: uid, Indexes: []int32{-3}}, code: CodeInvalid, field: "indexes"},
		{name: "repeated", m: &protos.CancelBundlesRequest{PlacementGroupId: uid, Indexes: []int32{1, 0, 1}}, code: CodeInvalid, field: "twice"},
		{name: "too many", m: &protos.CancelBundlesRequest{PlacementGroupId: uid, Indexes: make([]int32, maxBundlesPerRequest+1)}, code: CodeTooLarge, field: "indexes"},
	} {
		_, err := checkCancelBundles(tc.m)
		wantRefusal(t, tc.name, err, tc.code, tc.field)
	}
}

func TestRequestError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{err: malformed(errors.New("proto: cannot parse")), code: CodeMalformed},
		{err: invalidFieldf("lease_id", "x"), code: CodeInvalid},
		{err: tooLargef("size", "x"), code: CodeTooLarge},
		{err: wire.NewError("unknown_lease", "x"), code: "unknown_lease"},
		{err: errors.New("anything else"), code: CodeInvalid},
	} {
		re := RequestError(protos.Method_SEAL_OBJECT, tc.err)
		if re.Code != tc.code {
			t.Errorf("%v: code %q, want %q", tc.err, re.Code, tc.code)
		}
	}
}

// The store and lease requests run for every task: accepting a valid one
// must cost no allocation.
func TestValidationAllocatesNothing(t *testing.T) {
	create := &protos.CreateObjectRequest{ObjectId: oid, Size: 100, OwnerWorkerId: uid}
	ids := [][]byte{oid, oid, oid}
	res := amounts(map[string]float64{CPU: 1, GPU: 0.5})
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := checkCreateObject(create, 1<<20); err != nil {
			t.Fatal(err)
		}
		if _, err := parseObjectID("object_id", oid); err != nil {
			t.Fatal(err)
		}
		if _, err := parseID("lease_id", uid); err != nil {
			t.Fatal(err)
		}
		if err := CheckObjectIDs("object_ids", ids); err != nil {
			t.Fatal(err)
		}
		if err := CheckAmounts(res); err != nil {
			t.Fatal(err)
		}
		if err := checkEndpoint("endpoint", "tcp:127.0.0.1:80"); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("validating valid requests allocates %v times", n)
	}
}

// A bundle request is refused whole, leaving the node's resources as they
// were; a repeated index once reserved a bundle twice (prepare) or took a
// listed bundle for the whole group and ended its other bundles' leases
// (cancel).
func TestBundleRequestsRefusedWhole(t *testing.T) {
	b := newBookkeeping(t, 4, 1)
	group := protos.NewUniqueID()
	bundle := func(i int32, cpus float64) *protos.BundleReservation {
		return &protos.BundleReservation{Index: i, Resources: amounts(map[string]float64{CPU: cpus})}
	}
	code := func(err error) string {
		var re *wire.RemoteError
		if errors.As(err, &re) {
			return re.Code
		}
		return fmt.Sprint(err)
	}
	err := b.s.prepareBundles(&protos.PrepareBundlesRequest{PlacementGroupId: group.Bytes(), Bundles: []*protos.BundleReservation{bundle(0, 1), bundle(0, 1)}})
	if code(err) != CodeInvalid || b.cpu() != 4 || len(b.s.groups) != 0 {
		t.Fatalf("prepare with a repeated index: %v; available CPU %v, %d groups", err, b.cpu(), len(b.s.groups))
	}
	if err := b.s.prepareBundles(&protos.PrepareBundlesRequest{PlacementGroupId: group.Bytes(), Bundles: []*protos.BundleReservation{bundle(0, 1), bundle(1, 1)}}); err != nil {
		t.Fatal(err)
	}
	if err := b.s.commitBundles(&protos.CommitBundlesRequest{PlacementGroupId: group.Bytes()}); err != nil {
		t.Fatal(err)
	}
	// A retried prepare of bundle 0 with a new bundle 2 reserves only 2.
	if err := b.s.prepareBundles(&protos.PrepareBundlesRequest{PlacementGroupId: group.Bytes(), Bundles: []*protos.BundleReservation{bundle(0, 1), bundle(2, 0.5)}}); err != nil {
		t.Fatal(err)
	}
	if b.cpu() != 1.5 {
		t.Fatalf("available CPU %v after reserving 2.5", b.cpu())
	}
	l := b.lease(map[string]float64{BundleResource(CPU, 0, group): 1}, nil, false)
	if l == nil {
		t.Fatal("lease on bundle 0 not granted")
	}
	err = b.s.cancelBundles(&protos.CancelBundlesRequest{PlacementGroupId: group.Bytes(), Indexes: []int32{1, 1, 2}})
	if code(err) != CodeInvalid || len(b.s.groups[group].bundles) != 3 {
		t.Fatalf("cancel with a repeated index: %v", err)
	}
	if err := b.s.cancelBundles(&protos.CancelBundlesRequest{PlacementGroupId: group.Bytes(), Indexes: []int32{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if l.worker.killed || b.s.leases[l.id] == nil {
		t.Fatal("cancelling bundles 1 and 2 ended the lease on bundle 0")
	}
	if b.cpu() != 3 {
		t.Fatalf("available CPU %v with bundle 0 left", b.cpu())
	}
}

// A worker registers once: a second REGISTER_WORKER naming it (from any
// connection) is refused and changes nothing.
func TestRegisterWorkerTwice(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := startRaylet(t, 1, 1)
	driver := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	var re *wire.RemoteError
	err = driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: protos.NewUniqueID().Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{})
	if !errors.As(err, &re) || re.Code != CodeInvalid {
		t.Fatalf("a second REGISTER_CLIENT on a driver's connection: %v", err)
	}
	lease := &protos.RequestWorkerLeaseReply{}
	if err := driver.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Resources: amounts(map[string]float64{CPU: 1})}, lease); err != nil {
		t.Fatal(err)
	}
	impostor := dialRaylet(t, r)
	err = impostor.Call(ctx, protos.Method_REGISTER_WORKER, &protos.RegisterWorkerRequest{WorkerId: lease.GetWorker().GetWorkerId(), Pid: 1}, &protos.RegisterWorkerReply{})
	if !errors.As(err, &re) || re.Code != CodeInvalid || !strings.Contains(re.Message, "registered already") {
		t.Fatalf("a second REGISTER_WORKER: %v", err)
	}
	// The impostor's connection is nobody's: closing it ends nothing.
	_ = impostor.Close()
	if err := driver.Call(ctx, protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: lease.GetLeaseId()}, &protos.ReturnWorkerLeaseReply{}); err != nil {
		t.Fatal(err)
	}
	again := &protos.RequestWorkerLeaseReply{}
	if err := driver.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Resources: amounts(map[string]float64{CPU: 1})}, again); err != nil {
		t.Fatal(err)
	}
	if again.GetWorker().GetPid() != lease.GetWorker().GetPid() {
		t.Fatalf("the worker was replaced (pid %d, then %d)", lease.GetWorker().GetPid(), again.GetWorker().GetPid())
	}
}

// Bad requests over the wire: answered with the code and naming the
// method, one-way ones dropped, and the connection serves on.
func TestBadRequestsOverTheWire(t *testing.T) {
	r := startRaylet(t, 1, 1)
	c := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		method protos.Method
		msg    proto.Message
		code   string
	}{
		{protos.Method_SEAL_OBJECT, &protos.SealObjectRequest{ObjectId: []byte{1, 2, 3}}, CodeInvalid},
		{protos.Method_GET_OBJECT_LOCATION, testconn.RawMessage([]byte{0x0a, 0x05, 1}), CodeMalformed},
		{protos.Method_CREATE_OBJECT, &protos.CreateObjectRequest{ObjectId: oid, Size: 1 << 30}, CodeTooLarge},
		{protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{}, CodeInvalid},
		{protos.Method_KILL_WORKER, &protos.KillWorkerRequest{WorkerId: oid}, CodeInvalid},
		{protos.Method_GET_WORKER_FAILURE_CAUSE, &protos.GetWorkerFailureCauseRequest{WorkerId: []byte{1}}, CodeInvalid},
		{protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: uid, Resources: amounts(map[string]float64{CPU: math.Inf(1)})}, CodeInvalid},
		{protos.Method_DELETE_OBJECTS, &protos.DeleteObjectsRequest{ObjectIds: [][]byte{oid}, PrimaryNodeId: []byte{9}}, CodeInvalid},
		{protos.Method_GET_NODE_INFO, testconn.RawMessage([]byte{0xff}), CodeMalformed},
		{protos.Method_PUSH_TASK, &protos.PushTaskRequest{}, "unsupported"},
	} {
		if err := c.Notify(tc.method, tc.msg); err != nil {
			t.Fatal(err)
		}
		err := c.Call(ctx, tc.method, tc.msg, nil)
		var re *wire.RemoteError
		if !errors.As(err, &re) || re.Code != tc.code {
			t.Errorf("%v: %v; want code %s", tc.method, err, tc.code)
			continue
		}
		if tc.code != "unsupported" && !strings.HasPrefix(re.Message, tc.method.String()+": ") {
			t.Errorf("%v: %q does not name the method", tc.method, re.Message)
		}
	}
	if err := c.Call(ctx, protos.Method_GET_NODE_INFO, &protos.GetNodeInfoRequest{}, &protos.GetNodeInfoReply{}); err != nil {
		t.Fatal(err)
	}
}
