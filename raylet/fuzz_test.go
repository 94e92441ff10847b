package raylet

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/testconn"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// fuzzAnswerTimeout bounds the answer to one request: every request the
// fuzz target sends is one the raylet answers at once (no job it can lease
// for ever gets a worker), so running into it means a hang.
const fuzzAnswerTimeout = 10 * time.Second

// startFuzzRaylet starts a raylet for FuzzRayletRequest: a small store,
// and jobs forgotten soon after their driver leaves, so that what one
// input leaves behind stays small.
func startFuzzRaylet(tb testing.TB) *Raylet {
	tb.Helper()
	r, err := New(Config{
		Credentials:       testCreds,
		SessionDir:        tb.TempDir(),
		Resources:         ResourceSet{CPU: 2 * resourceUnit},
		ObjectStoreMemory: 4 << 20,
		MaxWorkers:        1,
		Logger:            zerolog.Nop(),
		ReportInterval:    20 * time.Millisecond,
		FinishedJobLinger: time.Millisecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Shutdown)
	return r
}

func dialFuzz(tb testing.TB, r *Raylet) *wire.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, r.Endpoint(), nil, wire.WithAuthenticator(testCreds.Handshaker(auth.LabelWire)))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// tidyStore empties the store once inputs have filled it, so that created
// objects neither pile up nor spill to disk for the rest of the run.
func tidyStore(r *Raylet) {
	if st := r.store.Stats(); st.NumObjects < 32 && st.NumSpilled == 0 && st.Used < st.Capacity/2 {
		return
	}
	for _, o := range r.store.Objects() {
		_ = r.store.Delete(o.ID)
	}
}

// rayletSeeds are valid requests for each method the raylet serves, and
// edge cases. The drivers' jobs name this test binary with a wrong digest:
// their workers never start, so that no input can start processes.
func rayletSeeds(tb testing.TB) []struct {
	method protos.Method
	msg    proto.Message
	oneWay bool
} {
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	// Opening a FIFO blocks until someone writes to it: a job naming one
	// as its executable must be refused, not hold the raylet actor.
	fifo := filepath.Join(tb.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		tb.Fatal(err)
	}
	job, worker, node, group := protos.NewUniqueID().Bytes(), protos.NewUniqueID().Bytes(), protos.NewUniqueID().Bytes(), protos.NewUniqueID().Bytes()
	obj := protos.ObjectIDFor(protos.NewUniqueID(), 1).Bytes()
	digest := strings.Repeat("0", 64)
	cpu := func(v float64) *protos.Resources { return &protos.Resources{Amounts: map[string]float64{CPU: v}} }
	type seed = struct {
		method protos.Method
		msg    proto.Message
		oneWay bool
	}
	return []seed{
		{method: protos.Method_REGISTER_CLIENT, msg: &protos.RegisterClientRequest{JobId: job, Executable: exe, BinaryDigest: digest, WorkerId: worker, Env: []string{"A=1"}, WorkingDir: "/"}},
		{method: protos.Method_REGISTER_CLIENT, msg: &protos.RegisterClientRequest{JobId: job, Executable: "/dev/zero", BinaryDigest: digest}},
		{method: protos.Method_REGISTER_CLIENT, msg: &protos.RegisterClientRequest{JobId: job, Executable: fifo, BinaryDigest: digest}},
		{method: protos.Method_REGISTER_CLIENT, msg: &protos.RegisterClientRequest{JobId: job, Executable: exe, BinaryDigest: digest, Env: []string{"NOEQUALS"}}},
		{method: protos.Method_REGISTER_CLIENT, msg: &protos.RegisterClientRequest{JobId: job, Executable: exe, BinaryDigest: digest,
			Binaries:   []*protos.JobBinary{{Goos: "linux", Goarch: "amd64", Digest: digest}, {Goos: "../x", Goarch: "", Digest: "zz"}},
			RuntimeEnv: &protos.RuntimeEnv{EnvVars: []string{"A=1"}, PackageDigest: digest, PackageContent: 1 << 62}}},
		{method: protos.Method_REGISTER_WORKER, msg: &protos.RegisterWorkerRequest{WorkerId: worker, Pid: 1, JobId: job, Endpoint: "unix:/nonexistent/w.sock", TcpEndpoint: "tcp:127.0.0.1:1"}},
		{method: protos.Method_REQUEST_WORKER_LEASE, msg: &protos.RequestWorkerLeaseRequest{JobId: job, Resources: cpu(1), Function: "f"}},
		{method: protos.Method_REQUEST_WORKER_LEASE, msg: &protos.RequestWorkerLeaseRequest{JobId: job, Resources: cpu(1), Dedicated: true, Detached: true, RunningResources: cpu(0),
			Strategy: &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY, NodeId: node, Labels: map[string]*protos.LabelValues{"zone": {Values: []string{"a"}}}}}},
		{method: protos.Method_REQUEST_WORKER_LEASE, msg: &protos.RequestWorkerLeaseRequest{JobId: job, Resources: cpu(math.NaN()), PreferredNodeId: node}},
		{method: protos.Method_REQUEST_WORKER_LEASE, msg: &protos.RequestWorkerLeaseRequest{JobId: job, Strategy: &protos.SchedulingStrategy{Kind: 99}}},
		{method: protos.Method_RETURN_WORKER_LEASE, msg: &protos.ReturnWorkerLeaseRequest{LeaseId: worker, DisconnectWorker: true}},
		{method: protos.Method_NOTIFY_ACTOR_STARTED, msg: &protos.NotifyActorStartedRequest{LeaseId: worker}},
		{method: protos.Method_NOTIFY_BLOCKED, msg: &protos.NotifyBlockedRequest{LeaseId: worker, Blocked: true}, oneWay: true},
		{method: protos.Method_NOTIFY_BLOCKED, msg: &protos.NotifyBlockedRequest{LeaseId: worker[:3]}},
		{method: protos.Method_KILL_WORKER, msg: &protos.KillWorkerRequest{WorkerId: worker, Reason: "test"}},
		{method: protos.Method_GET_WORKER_FAILURE_CAUSE, msg: &protos.GetWorkerFailureCauseRequest{WorkerId: worker}},
		{method: protos.Method_GET_WORKER_FAILURE_CAUSE, msg: &protos.GetWorkerFailureCauseRequest{WorkerId: worker[:5]}},
		{method: protos.Method_CREATE_OBJECT, msg: &protos.CreateObjectRequest{ObjectId: obj, Size: 100, OwnerWorkerId: worker}},
		{method: protos.Method_CREATE_OBJECT, msg: &protos.CreateObjectRequest{ObjectId: obj, Size: 1 << 40, NoSpill: true}},
		{method: protos.Method_CREATE_OBJECT, msg: &protos.CreateObjectRequest{ObjectId: obj, Size: math.MaxUint64}, oneWay: true},
		{method: protos.Method_SEAL_OBJECT, msg: &protos.SealObjectRequest{ObjectId: obj}},
		{method: protos.Method_GET_OBJECT_LOCATION, msg: &protos.GetObjectLocationRequest{ObjectId: obj}},
		{method: protos.Method_GET_OBJECT_LOCATION, msg: &protos.GetObjectLocationRequest{ObjectId: obj, Pin: true}},
		{method: protos.Method_RELEASE_OBJECTS, msg: &protos.ReleaseObjectsRequest{ObjectIds: [][]byte{obj, obj}}, oneWay: true},
		{method: protos.Method_RELEASE_OBJECTS, msg: &protos.ReleaseObjectsRequest{ObjectIds: [][]byte{obj, {}}}},
		{method: protos.Method_DELETE_OBJECTS, msg: &protos.DeleteObjectsRequest{ObjectIds: [][]byte{obj}, PrimaryNodeId: node}, oneWay: true},
		{method: protos.Method_DELETE_OBJECTS, msg: &protos.DeleteObjectsRequest{ObjectIds: [][]byte{obj}}},
		{method: protos.Method_PULL_OBJECT, msg: &protos.PullObjectRequest{ObjectId: obj, NodeId: node, OwnerWorkerId: worker, Size: 10}},
		{method: protos.Method_GET_NODE_INFO, msg: &protos.GetNodeInfoRequest{}},
		{method: protos.Method_MEMORY_SUMMARY, msg: &protos.MemorySummaryRequest{}},
		{method: protos.Method_RUNTIME_ENV_CACHE, msg: &protos.RuntimeEnvCacheRequest{}},
		{method: protos.Method_REQUEST_WORKER_LEASE, msg: &protos.RequestWorkerLeaseRequest{JobId: job, Resources: cpu(1),
			RuntimeEnv: &protos.RuntimeEnv{EnvVars: []string{"no equals sign"}, PackageDigest: "../../x"}}},
		{method: protos.Method_PREPARE_BUNDLES, msg: &protos.PrepareBundlesRequest{PlacementGroupId: group, Bundles: []*protos.BundleReservation{{Index: 0, Resources: cpu(1)}, {Index: 1, Resources: cpu(0.5)}}}},
		{method: protos.Method_PREPARE_BUNDLES, msg: &protos.PrepareBundlesRequest{PlacementGroupId: group, Bundles: []*protos.BundleReservation{{Index: 2, Resources: cpu(1)}, {Index: 2, Resources: cpu(1)}}}},
		{method: protos.Method_COMMIT_BUNDLES, msg: &protos.CommitBundlesRequest{PlacementGroupId: group}},
		{method: protos.Method_CANCEL_BUNDLES, msg: &protos.CancelBundlesRequest{PlacementGroupId: group, Indexes: []int32{1, 1}}},
		{method: protos.Method_CANCEL_BUNDLES, msg: &protos.CancelBundlesRequest{PlacementGroupId: group}},
		{method: protos.Method_PUSH_TASK, msg: &protos.PushTaskRequest{}},
		{method: protos.Method_METHOD_UNSPECIFIED, msg: &protos.GetNodeInfoRequest{}},
		{method: protos.Method(999), msg: &protos.GetNodeInfoRequest{}, oneWay: true},
	}
}

// FuzzRayletRequest sends one request (any method, any payload, as a
// request or one-way) to a running raylet over an authenticated
// connection, as any process of the node can: a request must be answered,
// with a reply or an error but not a handler panic (CodeInternal), and
// the raylet must go on serving.
func FuzzRayletRequest(f *testing.F) {
	for _, s := range rayletSeeds(f) {
		f.Add(uint16(s.method), mustMarshal(f, s.msg), s.oneWay)
	}
	f.Add(uint16(protos.Method_CREATE_OBJECT), []byte{0xff, 0xff, 0xff}, false)
	f.Add(uint16(protos.Method_REGISTER_CLIENT), []byte{0x0a, 0x7f}, true)
	r := startFuzzRaylet(f)
	f.Fuzz(func(t *testing.T, method uint16, payload []byte, oneWay bool) {
		c := dialFuzz(t, r)
		defer c.Close()
		m := protos.Method(method)
		ctx, cancel := context.WithTimeout(context.Background(), fuzzAnswerTimeout)
		defer cancel()
		if oneWay {
			if err := c.Notify(m, testconn.RawMessage(payload)); err != nil {
				t.Fatalf("notify %v: %v", m, err)
			}
		} else {
			err := c.Call(ctx, m, testconn.RawMessage(payload), nil)
			checkAnswer(t, m, err)
		}
		// The connection still serves, after the request (a connection's
		// requests reach the actor in order).
		if err := c.Call(ctx, protos.Method_GET_NODE_INFO, &protos.GetNodeInfoRequest{}, &protos.GetNodeInfoReply{}); err != nil {
			t.Fatalf("GET_NODE_INFO after %v: %v", m, err)
		}
		tidyStore(r)
	})
}

// checkAnswer fails unless err is an answer: none, or an error reply that
// is not a handler panic, and that names the method if it is about the
// request's form.
func checkAnswer(t *testing.T, m protos.Method, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var re *wire.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("%v: no answer: %v", m, err)
	}
	switch re.Code {
	case wire.CodeInternal:
		t.Fatalf("%v: handler panicked: %v", m, re.Message)
	case CodeMalformed, CodeTooLarge:
		if !strings.Contains(re.Message, m.String()) {
			t.Fatalf("%v: refusal %q does not name the method", m, re.Message)
		}
	}
}
