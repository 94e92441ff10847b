package gcs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet/scheduling"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Native fuzz targets for everything the GCS decodes from outside: the
// requests on its subjects (FuzzServerRequests against a live server,
// FuzzRequestDecoders on the handlers' decode and check) and the records in
// its buckets (FuzzRecordLoaders, FuzzKVKey). Their seeds run under plain
// `go test`; to fuzz one:
//
//	go test -run '^$' -fuzz '^FuzzServerRequests$' -fuzztime 45s ./gcs/

// fixedID makes the seeds' ids deterministic, so the corpus is stable.
func fixedID(b byte) protos.UniqueID {
	var id protos.UniqueID
	for i := range id {
		id[i] = b
	}
	return id
}

var (
	fuzzNode  = fixedID(0x11)
	fuzzJob   = fixedID(0x22)
	fuzzActor = fixedID(0x33)
	fuzzPG    = fixedID(0x44)
)

func fuzzNodeInfo() *protos.NodeInfo {
	return &protos.NodeInfo{NodeId: fuzzNode.Bytes(), Hostname: "fuzz", RayletEndpoint: "unix:/tmp/fuzz-raylet.sock",
		RayletTcpEndpoint: "tcp:127.0.0.1:1", State: protos.NodeInfo_ALIVE,
		Total:     &protos.Resources{Amounts: map[string]float64{"CPU": 4, "memory": 1e9}},
		Available: &protos.Resources{Amounts: map[string]float64{"CPU": 4, "memory": 1e9}},
		Labels:    map[string]string{"zone": "a"},
		Pending:   []*protos.ResourceDemand{{Shape: &protos.Resources{Amounts: map[string]float64{"CPU": 1}}, Count: 2}}}
}

func fuzzJobInfo() *protos.JobInfo {
	return &protos.JobInfo{JobId: fuzzJob.Bytes(), Executable: "/bin/driver", DriverPid: 1, DriverHost: "fuzz",
		Namespace: "ns", Env: []string{"A=1"}, WorkingDir: "/tmp", BinaryDigest: strings.Repeat("0", 64)}
}

func fuzzActorSpec() *protos.ActorSpec {
	return &protos.ActorSpec{ActorId: fuzzActor.Bytes(), JobId: fuzzJob.Bytes(), ClassName: "Counter",
		Args:  []*protos.TaskArg{{Value: &protos.ObjectData{Encoding: protos.Encoding_ENCODING_MSGPACK, Data: []byte{0x01}}}},
		Owner: &protos.Address{WorkerId: fixedID(0x55).Bytes(), NodeId: fuzzNode.Bytes(), Endpoint: "unix:/tmp/w.sock", Pid: 2},
		Options: &protos.ActorOptions{Name: "c", Namespace: "ns", MaxRestarts: 1, MaxConcurrency: 2,
			PlacementResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}},
			Strategy:           &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_SPREAD, Labels: map[string]*protos.LabelValues{"zone": {Values: []string{"a"}}}},
			ConcurrencyGroups:  []*protos.ConcurrencyGroup{{Name: "io", MaxConcurrency: 1, Methods: []string{"Read"}}}}}
}

func fuzzPGSpec() *protos.PlacementGroupSpec {
	return &protos.PlacementGroupSpec{PlacementGroupId: fuzzPG.Bytes(), JobId: fuzzJob.Bytes(), Name: "g", Namespace: "ns",
		Strategy: protos.PlacementStrategy_PACK,
		Bundles:  []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}, {Amounts: map[string]float64{"CPU": 0.5}}}}
}

// nested is a RegisterActorRequest whose argument's error is nested depth
// times (ErrorFrame.task_error.chain...).
func nested(depth int) []byte {
	// Each level is TaskErrorProto{chain: [ErrorFrame{task_error: <inner>}]}:
	// two length prefixes. Their lengths are found inside out, then the
	// prefixes written outside in, which keeps deep nesting linear.
	frames, levels := make([]int, depth+1), make([]int, depth+1) // encoded sizes, innermost first
	for i := 1; i <= depth; i++ {
		frames[i] = protowire.SizeTag(5) + protowire.SizeBytes(levels[i-1])
		levels[i] = protowire.SizeTag(8) + protowire.SizeBytes(frames[i])
	}
	b := make([]byte, 0, levels[depth])
	for i := depth; i >= 1; i-- {
		b = protowire.AppendVarint(protowire.AppendTag(b, 8, protowire.BytesType), uint64(frames[i]))
		b = protowire.AppendVarint(protowire.AppendTag(b, 5, protowire.BytesType), uint64(levels[i-1]))
	}
	// As the error of an actor spec's argument.
	obj := protowire.AppendTag(nil, 7, protowire.BytesType)
	obj = protowire.AppendBytes(obj, b)
	arg := protowire.AppendTag(nil, 1, protowire.BytesType)
	arg = protowire.AppendBytes(arg, obj)
	spec := protowire.AppendTag(nil, 4, protowire.BytesType)
	spec = protowire.AppendBytes(spec, arg)
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(req, spec)
}

// edgeSeeds are payloads every subject is seeded with.
var edgeSeeds = sync.OnceValue(func() [][]byte {
	return [][]byte{
		nil,
		{0xff, 0xff, 0xff, 0xff},
		// field 1, length-delimited, length 2^63: truncated.
		{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		// field 1, varint that never ends.
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		// an unknown field 9999.
		protowire.AppendVarint(protowire.AppendTag(nil, 9999, protowire.VarintType), 1),
		nested(50),
	}
})

// TestDeeplyNestedRequest: nesting beyond protobuf's recursion limit is a
// decode error, not a stack overflow. (Too slow to decode as a fuzz seed.)
func TestDeeplyNestedRequest(t *testing.T) {
	t.Parallel()
	_, e := decodeRequest[protos.RegisterActorRequest](SubjectActorRegister, nested(12000), checkRegisterActor)
	if e.GetCode() != CodeInvalid || !strings.Contains(e.GetMessage(), "cannot decode") {
		t.Fatalf("12000 levels deep: %v", e)
	}
	if _, e := decodeRequest[protos.RegisterActorRequest](SubjectActorRegister, nested(50), checkRegisterActor); e.GetCode() != CodeInvalid ||
		!strings.Contains(e.GetMessage(), "spec.actor_id") {
		t.Fatalf("50 levels deep: %v", e)
	}
}

// fuzzSubject is one served subject: its seeds, how its handler decodes
// and checks a payload, the reply type (nil: a publish nobody answers) and
// what the managers rely on in a request that passed its check.
type fuzzSubject struct {
	subject string
	seeds   []proto.Message
	decode  func(data []byte) (proto.Message, *protos.GcsError)
	reply   func() replyWithError
	checked func(t *testing.T, m proto.Message)
}

func decoder[Req any, PReq message[Req]](subject string, check func(PReq) error) func([]byte) (proto.Message, *protos.GcsError) {
	return func(data []byte) (proto.Message, *protos.GcsError) {
		m, e := decodeRequest[Req](subject, data, check)
		if e != nil {
			return nil, e
		}
		return m, nil
	}
}

func replyOf[Rep any, PRep interface {
	*Rep
	replyWithError
}]() func() replyWithError {
	return func() replyWithError { return PRep(new(Rep)) }
}

// fuzzSubjects lists every subject the GCS serves but the shutdown
// request (which any payload that decodes would grant, ending the fuzzed
// server; FuzzRequestDecoders covers its decoding), plus the events the
// GCS publishes, which it must ignore when anyone else does.
func fuzzSubjects() []fuzzSubject {
	badNode := fuzzNodeInfo()
	badNode.Available.Amounts["CPU"] = math.NaN()
	badNode.State = 77
	badSpec := fuzzActorSpec()
	badSpec.Options.Strategy = &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY, NodeId: []byte{1}}
	packed := fuzzActorSpec()
	packed.ActorId, packed.Options.Packed, packed.Options.Name = fixedID(0x34).Bytes(), true, ""
	badPG := fuzzPGSpec()
	badPG.Bundles[1].Amounts["CPU"] = math.Inf(1)
	spreadPG := fuzzPGSpec()
	spreadPG.PlacementGroupId, spreadPG.Name, spreadPG.Strategy = fixedID(0x45).Bytes(), "", protos.PlacementStrategy_STRICT_SPREAD
	finished := fuzzJobInfo()
	finished.Finished = true
	dead := fuzzNodeInfo()
	dead.State = protos.NodeInfo_DEAD

	nodeOK := func(t *testing.T, m proto.Message) {
		var info *protos.NodeInfo
		switch r := m.(type) {
		case *protos.RegisterNodeRequest:
			info = r.GetNode()
		case *protos.NodeReport:
			info = r.GetNode()
		}
		if _, err := scheduling.FromAmounts(info.GetTotal().GetAmounts()); err != nil {
			t.Errorf("checked node's total does not convert: %v", err)
		}
	}
	return []fuzzSubject{
		{SubjectNodeRegister, []proto.Message{&protos.RegisterNodeRequest{Node: fuzzNodeInfo()}, &protos.RegisterNodeRequest{Node: badNode}},
			decoder[protos.RegisterNodeRequest](SubjectNodeRegister, checkRegisterNode), replyOf[protos.RegisterNodeReply](), nodeOK},
		{SubjectNodeUnregister, []proto.Message{&protos.UnregisterNodeRequest{NodeId: fuzzNode.Bytes()}},
			decoder[protos.UnregisterNodeRequest](SubjectNodeUnregister, checkUnregisterNode), replyOf[protos.UnregisterNodeReply](), nil},
		{SubjectNodeList, []proto.Message{&protos.ListNodesRequest{}},
			decoder[protos.ListNodesRequest](SubjectNodeList, nil), replyOf[protos.ListNodesReply](), nil},
		{NodeReportSubject(fuzzNode), []proto.Message{&protos.NodeReport{Node: fuzzNodeInfo()}, &protos.NodeReport{Node: badNode}},
			decoder[protos.NodeReport](NodeReportSubject(fuzzNode), checkNodeReport), nil, nodeOK},

		{SubjectJobRegister, []proto.Message{&protos.RegisterJobRequest{Job: fuzzJobInfo()}},
			decoder[protos.RegisterJobRequest](SubjectJobRegister, checkRegisterJob), replyOf[protos.RegisterJobReply](), nil},
		{SubjectJobFinish, []proto.Message{&protos.FinishJobRequest{JobId: fuzzJob.Bytes()}},
			decoder[protos.FinishJobRequest](SubjectJobFinish, checkFinishJob), replyOf[protos.FinishJobReply](), nil},
		{SubjectJobList, []proto.Message{&protos.ListJobsRequest{}},
			decoder[protos.ListJobsRequest](SubjectJobList, nil), replyOf[protos.ListJobsReply](), nil},

		{SubjectFuncRegister, []proto.Message{&protos.RegisterFunctionsRequest{Table: &protos.FunctionTable{JobId: fuzzJob.Bytes(), Digest: "d",
			Functions: []*protos.FunctionDescriptor{{Name: "main.Add", Signature: "func(int, int) int"}}}}},
			decoder[protos.RegisterFunctionsRequest](SubjectFuncRegister, checkRegisterFunctions), replyOf[protos.RegisterFunctionsReply](), nil},
		{SubjectFuncGet, []proto.Message{&protos.GetFunctionsRequest{JobId: fuzzJob.Bytes()}},
			decoder[protos.GetFunctionsRequest](SubjectFuncGet, checkGetFunctions), replyOf[protos.GetFunctionsReply](), nil},

		{SubjectKVPut, []proto.Message{&protos.KVPutRequest{Namespace: "ns", Key: "k", Value: []byte("v")},
			&protos.KVPutRequest{Key: strings.Repeat("k", maxKVKeyBytes), Namespace: strings.Repeat("n", maxKVNamespaceBytes), Overwrite: true}},
			decoder[protos.KVPutRequest](SubjectKVPut, checkKVPut), replyOf[protos.KVPutReply](), func(t *testing.T, m proto.Message) {
				r := m.(*protos.KVPutRequest)
				checkStorableKey(t, r.GetNamespace(), r.GetKey())
			}},
		{SubjectKVGet, []proto.Message{&protos.KVGetRequest{Namespace: "ns", Key: "k"}},
			decoder[protos.KVGetRequest](SubjectKVGet, checkKVGet), replyOf[protos.KVGetReply](), nil},
		{SubjectKVDelete, []proto.Message{&protos.KVDeleteRequest{Namespace: "ns", Key: "k"}},
			decoder[protos.KVDeleteRequest](SubjectKVDelete, checkKVDelete), replyOf[protos.KVDeleteReply](), nil},
		{SubjectKVKeys, []proto.Message{&protos.KVKeysRequest{Namespace: "ns", Prefix: "k"}},
			decoder[protos.KVKeysRequest](SubjectKVKeys, checkKVKeys), replyOf[protos.KVKeysReply](), nil},

		{SubjectActorRegister, []proto.Message{&protos.RegisterActorRequest{Spec: fuzzActorSpec()}, &protos.RegisterActorRequest{Spec: packed},
			&protos.RegisterActorRequest{Spec: badSpec}},
			decoder[protos.RegisterActorRequest](SubjectActorRegister, checkRegisterActor), replyOf[protos.RegisterActorReply](), func(t *testing.T, m proto.Message) {
				spec := m.(*protos.RegisterActorRequest).GetSpec()
				if _, err := scheduling.FromAmounts(placementOf(spec).GetAmounts()); err != nil {
					t.Errorf("checked actor's demand does not convert: %v", err)
				}
				if _, err := scheduling.StrategyFromProto(spec.GetOptions().GetStrategy(), 0); err != nil {
					t.Errorf("checked actor's strategy does not convert: %v", err)
				}
			}},
		{SubjectActorGet, []proto.Message{&protos.GetActorRequest{ActorId: fuzzActor.Bytes()}, &protos.GetActorRequest{Name: "c", Namespace: "ns"}},
			decoder[protos.GetActorRequest](SubjectActorGet, checkGetActor), replyOf[protos.GetActorReply](), nil},
		{SubjectActorList, []proto.Message{&protos.ListActorsRequest{}, &protos.ListActorsRequest{JobId: fuzzJob.Bytes()}},
			decoder[protos.ListActorsRequest](SubjectActorList, checkListActors), replyOf[protos.ListActorsReply](), nil},
		{SubjectTaskList, []proto.Message{&protos.ListTasksRequest{}, &protos.ListTasksRequest{JobId: fuzzJob.Bytes(), Limit: 10, Offset: 5,
			Filters: []*protos.TaskFilter{{Field: "state", Value: "FAILED"}, {Field: "name", Value: "f", Not: true}}}},
			decoder[protos.ListTasksRequest](SubjectTaskList, checkListTasks), replyOf[protos.ListTasksReply](), nil},
		{SubjectTaskSummarize, []proto.Message{&protos.SummarizeTasksRequest{}, &protos.SummarizeTasksRequest{JobId: fuzzJob.Bytes()}},
			decoder[protos.SummarizeTasksRequest](SubjectTaskSummarize, checkSummarizeTasks), replyOf[protos.SummarizeTasksReply](), nil},
		{SubjectActorKill, []proto.Message{&protos.KillActorGcsRequest{ActorId: fuzzActor.Bytes()}},
			decoder[protos.KillActorGcsRequest](SubjectActorKill, checkKillActor), replyOf[protos.KillActorGcsReply](), nil},

		{SubjectPGCreate, []proto.Message{&protos.CreatePlacementGroupRequest{Spec: fuzzPGSpec()}, &protos.CreatePlacementGroupRequest{Spec: spreadPG},
			&protos.CreatePlacementGroupRequest{Spec: badPG}},
			decoder[protos.CreatePlacementGroupRequest](SubjectPGCreate, checkCreatePG), replyOf[protos.CreatePlacementGroupReply](), func(t *testing.T, m proto.Message) {
				spec := m.(*protos.CreatePlacementGroupRequest).GetSpec()
				if _, err := newPGEntry(&protos.PlacementGroupInfo{Spec: spec}); err != nil {
					t.Errorf("checked group does not convert: %v", err)
				}
			}},
		{SubjectPGGet, []proto.Message{&protos.GetPlacementGroupRequest{PlacementGroupId: fuzzPG.Bytes()}, &protos.GetPlacementGroupRequest{Name: "g", Namespace: "ns"}},
			decoder[protos.GetPlacementGroupRequest](SubjectPGGet, checkGetPG), replyOf[protos.GetPlacementGroupReply](), nil},
		{SubjectPGRemove, []proto.Message{&protos.RemovePlacementGroupRequest{PlacementGroupId: fuzzPG.Bytes()}},
			decoder[protos.RemovePlacementGroupRequest](SubjectPGRemove, checkRemovePG), replyOf[protos.RemovePlacementGroupReply](), nil},
		{SubjectPGList, []proto.Message{&protos.ListPlacementGroupsRequest{}},
			decoder[protos.ListPlacementGroupsRequest](SubjectPGList, nil), replyOf[protos.ListPlacementGroupsReply](), nil},

		{SubjectClusterInfo, []proto.Message{&protos.ClusterInfoRequest{}},
			decoder[protos.ClusterInfoRequest](SubjectClusterInfo, nil), replyOf[protos.ClusterInfoReply](), nil},

		// Forged events: the GCS does not subscribe to them.
		{SubjectNodeEvents, []proto.Message{dead}, nil, nil, nil},
		{SubjectJobEvents, []proto.Message{finished}, nil, nil, nil},
	}
}

// kvKeyToken is the NATS KV key syntax (jetstream's validKeyRe).
var kvKeyToken = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

// checkStorableKey: a checked KV key maps to a bucket key NATS accepts,
// whose subject fits NATS's default control line with room for the
// publish's reply subject, and that maps back.
func checkStorableKey(t *testing.T, ns, key string) {
	t.Helper()
	k := kvKey(ns, key)
	if !kvKeyToken.MatchString(k) {
		t.Errorf("kvKey(%q, %q) = %q is not a NATS KV key", ns, key, k)
	}
	if s := kvSubject(BucketKV, k); len(s) > 2048 {
		t.Errorf("kvKey(%q, %q): subject of %d bytes", ns, key, len(s))
	}
	if gotNS, gotKey, err := parseKVKey(k); err != nil || gotNS != ns || gotKey != key {
		t.Errorf("parseKVKey(kvKey(%q, %q)) = %q, %q, %v", ns, key, gotNS, gotKey, err)
	}
}

func addSubjectSeeds(f *testing.F, subjects []fuzzSubject) {
	f.Helper()
	for i, s := range subjects {
		for _, m := range s.seeds {
			data, err := proto.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), data)
		}
		for _, data := range edgeSeeds() {
			f.Add(uint8(i), data)
		}
	}
}

// TestFuzzSubjectsCoverEndpoints keeps the fuzz targets' subjects in step
// with the server's.
func TestFuzzSubjectsCoverEndpoints(t *testing.T) {
	t.Parallel()
	covered := map[string]bool{SubjectClusterShutdown: true, SubjectNodeReports: true}
	for _, s := range fuzzSubjects() {
		covered[s.subject] = true
	}
	for _, ep := range (&Server{}).endpoints() {
		if !covered[ep.subject] {
			t.Errorf("subject %s is served but not fuzzed", ep.subject)
		}
	}
}

// FuzzRequestDecoders runs each handler's decode and check on arbitrary
// payloads: never a panic; a refusal is an ErrInvalid GcsError naming the
// subject; an accepted request encodes and is accepted again the same, and
// holds what the managers rely on.
func FuzzRequestDecoders(f *testing.F) {
	subjects := fuzzSubjects()
	addSubjectSeeds(f, subjects)
	shutdown := len(subjects)
	f.Add(uint8(shutdown), []byte(nil))
	f.Add(uint8(shutdown), []byte{0xff})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		if int(which)%(len(subjects)+1) == shutdown {
			_, e := decodeRequest[protos.ShutdownRequest](SubjectClusterShutdown, data, nil)
			if e != nil && (e.GetCode() != CodeInvalid || !strings.HasPrefix(e.GetMessage(), SubjectClusterShutdown+": ")) {
				t.Fatalf("shutdown refused with %v", e)
			}
			return
		}
		s := subjects[int(which)%(len(subjects)+1)]
		if s.decode == nil {
			return // an event: nothing decodes it
		}
		m, e := s.decode(data)
		if e != nil {
			if e.GetCode() != CodeInvalid || !strings.HasPrefix(e.GetMessage(), s.subject+": ") {
				t.Fatalf("%s refused with %v", s.subject, e)
			}
			if err := replyError(s.subject, e); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s: client sees %v", s.subject, err)
			}
			return
		}
		again, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("%s: accepted %v does not encode: %v", s.subject, m, err)
		}
		m2, e := s.decode(again)
		if e != nil {
			t.Fatalf("%s: accepted %v, then refused its encoding: %v", s.subject, m, e)
		}
		if !proto.Equal(m, m2) {
			t.Fatalf("%s: %v encodes to %v", s.subject, m, m2)
		}
		if s.checked != nil {
			s.checked(t, m)
		}
	})
}

// fuzzPlacer is a placer with raylets that grant no worker but reserve
// every bundle: actors die at once, groups are created, and nothing is
// dialed (the fuzzed nodes' endpoints are arbitrary).
type fuzzPlacer struct{}

var errFuzzNoWorkers = wire.NewError("invalid", "fuzz: this cluster grants no worker")

func (fuzzPlacer) lease(context.Context, *protos.NodeInfo, *protos.RequestWorkerLeaseRequest) (*protos.RequestWorkerLeaseReply, error) {
	return nil, errFuzzNoWorkers
}

func (fuzzPlacer) create(context.Context, *protos.Address, *protos.CreateActorRequest, func(string)) (actorConn, *protos.CreateActorReply, error) {
	return nil, nil, errFuzzNoWorkers
}
func (fuzzPlacer) attach(context.Context, *protos.NodeInfo, *protos.Address, *protos.AttachActorRequest, func(string)) (actorConn, error) {
	return nil, errFuzzNoWorkers
}
func (fuzzPlacer) started(context.Context, *protos.NodeInfo, []byte) error         { return nil }
func (fuzzPlacer) kill(context.Context, actorConn, *protos.KillActorRequest) error { return nil }
func (fuzzPlacer) returnLease(context.Context, *protos.NodeInfo, []byte) error     { return nil }
func (fuzzPlacer) close()                                                          {}
func (fuzzPlacer) createOn(_ actorConn, _ *protos.CreateActorRequest, done func(*protos.CreateActorReply, error)) {
	done(nil, errFuzzNoWorkers)
}
func (fuzzPlacer) killOn(_ actorConn, _ *protos.KillActorRequest, done func(error)) { done(nil) }
func (fuzzPlacer) connectHost(context.Context, *protos.Address, func(protos.UniqueID, string)) (actorConn, error) {
	return nil, errFuzzNoWorkers
}
func (fuzzPlacer) prepareBundles(context.Context, *protos.NodeInfo, *protos.PrepareBundlesRequest) error {
	return nil
}
func (fuzzPlacer) commitBundles(context.Context, *protos.NodeInfo, *protos.CommitBundlesRequest) error {
	return nil
}
func (fuzzPlacer) cancelBundles(context.Context, *protos.NodeInfo, *protos.CancelBundlesRequest) error {
	return nil
}

// fuzzServer is one GCS for a whole fuzzing run, started outside f.Fuzz.
// Its logs go to stderr at error level only: test logging is not allowed
// while the fuzz function runs, and fuzzed requests make many warnings.
type fuzzServer struct {
	srv *Server
	nc  *nats.Conn
	c   *Client
	// failures counts manager panics (supervisor directives), with the
	// last reason.
	failures atomic.Int64
	mu       sync.Mutex
	reason   string
}

func startFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.ErrorLevel).With().Timestamp().Logger()
	srv, err := NewServer(Options{StoreDir: f.TempDir(), Logger: log, Credentials: testCreds, placer: fuzzPlacer{},
		NodeTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Shutdown)
	fs := &fuzzServer{srv: srv}
	srv.system.EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*actor.SupervisorEvent); ok {
			fs.failures.Add(1)
			fs.mu.Lock()
			fs.reason = fmt.Sprintf("%s: %v", e.Child.Id, e.Reason)
			fs.mu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts, err := testCreds.NATSOptions(auth.RoleGCS)
	if err != nil {
		f.Fatal(err)
	}
	fs.c, err = Dial(ctx, srv.ClientURL(), zerolog.Nop(), opts...)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(fs.c.Close)
	fs.nc = fs.c.NATS()
	return fs
}

// alive fails t unless the server answers a request to every manager, and
// no manager has panicked since failures was before.
func (fs *fuzzServer) alive(t *testing.T, after string, before int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// ClusterInfo asks the node and job managers; the others are asked
	// one each.
	checks := []func() error{
		func() error { _, err := fs.c.ClusterInfo(ctx); return err },
		func() error {
			_, err := fs.c.GetFunctions(ctx, fixedID(0x99))
			if errors.Is(err, ErrNotFound) {
				err = nil
			}
			return err
		},
		func() error { _, _, err := fs.c.KVGet(ctx, "fuzz", "ping"); return err },
		func() error { _, err := fs.c.ListActors(ctx, fixedID(0x99)); return err },
		func() error { _, err := fs.c.ListPlacementGroups(ctx); return err },
	}
	for _, check := range checks {
		if err := check(); err != nil {
			t.Fatalf("after %s, a valid request failed: %v", after, err)
		}
	}
	if n := fs.failures.Load() - before; n > 0 {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		t.Fatalf("after %s, %d manager failures, the last: %s", after, n, fs.reason)
	}
}

// FuzzServerRequests sends arbitrary payloads to the subjects of one live
// GCS: every request is answered, with a reply its client can decode,
// within seconds; afterwards every manager still answers and none has
// panicked.
func FuzzServerRequests(f *testing.F) {
	subjects := fuzzSubjects()
	addSubjectSeeds(f, subjects)
	fs := startFuzzServer(f)
	maxPayload := int(fs.nc.MaxPayload())
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		s := subjects[int(which)%len(subjects)]
		if len(data) > maxPayload {
			t.Skip("larger than NATS's max_payload: the client refuses to send it")
		}
		before := fs.failures.Load()
		after := fmt.Sprintf("%d bytes on %s", len(data), s.subject)
		if s.reply == nil {
			if err := fs.nc.Publish(s.subject, data); err != nil {
				t.Fatalf("publish %s: %v", after, err)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m, err := fs.nc.RequestWithContext(ctx, s.subject, data)
			if err != nil {
				t.Fatalf("no answer to %s: %v", after, err)
			}
			rep := s.reply()
			if err := proto.Unmarshal(m.Data, rep); err != nil {
				t.Fatalf("undecodable reply to %s: %v", after, err)
			}
			if e := rep.GetError(); e != nil {
				switch e.GetCode() {
				case CodeInvalid, CodeNotFound, CodeAlreadyExists:
				default:
					t.Fatalf("%s answered %v", after, e)
				}
			}
		}
		fs.alive(t, after, before)
	})
}

// FuzzRecordLoaders decodes arbitrary bytes as a stored record of each
// bucket, under an arbitrary key: never a panic; a refusal wraps
// errBadRecord; an accepted record is keyed by its own id and makes a
// usable entry.
func FuzzRecordLoaders(f *testing.F) {
	type loader struct {
		bucket string
		load   func(t *testing.T, key string, value []byte) error
	}
	loaders := []loader{
		{BucketNodes, func(t *testing.T, key string, value []byte) error {
			id, info, err := decodeNodeRecord(key, value)
			if err == nil && (id.String() != key || info == nil) {
				t.Fatalf("node record under %q decoded as %s", key, id)
			}
			return err
		}},
		{BucketJobs, func(t *testing.T, key string, value []byte) error {
			id, _, err := decodeJobRecord(key, value)
			if err == nil && id.String() != key {
				t.Fatalf("job record under %q decoded as %s", key, id)
			}
			return err
		}},
		{BucketFunctions, func(t *testing.T, key string, value []byte) error {
			id, _, err := decodeFunctionRecord(key, value)
			if err == nil && id.String() != key {
				t.Fatalf("function table under %q decoded as %s", key, id)
			}
			return err
		}},
		{BucketKV, func(t *testing.T, key string, value []byte) error {
			ns, k, err := decodeKVRecord(key, value)
			if err == nil && kvKey(ns, k) != key {
				// Two bucket keys for one (namespace, key): a delete
				// would remove one and the other come back on restart.
				t.Fatalf("kv record under %q decoded as (%q, %q), which is stored under %q", key, ns, k, kvKey(ns, k))
			}
			return err
		}},
		{BucketActors, func(t *testing.T, key string, value []byte) error {
			r, err := decodeActorRecord(key, value)
			if err == nil {
				if r.id.String() != key || r.job.IsZero() {
					t.Fatalf("actor record under %q decoded as %s of job %s", key, r.id, r.job)
				}
				if _, err := scheduling.FromAmounts(placementOf(r.info.GetSpec()).GetAmounts()); err != nil {
					t.Fatalf("actor record's demand does not convert: %v", err)
				}
			}
			return err
		}},
		{BucketPlacementGroups, func(t *testing.T, key string, value []byte) error {
			g, err := decodePGRecord(key, value)
			if err == nil {
				if g.id.String() != key || len(g.bundles) == 0 || (g.nodes != nil && len(g.nodes) != len(g.bundles)) {
					t.Fatalf("group record under %q decoded as %+v", key, g)
				}
				for _, n := range g.nodes {
					if n != nil {
						if _, err := protos.UniqueIDFromBytes(n.GetNodeId()); err != nil {
							t.Fatalf("group record under %q: bundle node %x", key, n.GetNodeId())
						}
					}
				}
			}
			return err
		}},
	}

	seed := func(bucket int, key string, m proto.Message) {
		data, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(bucket), key, data)
	}
	node := fuzzNodeInfo()
	seed(0, fuzzNode.String(), node)
	node.State = protos.NodeInfo_DEAD
	seed(0, fuzzNode.String(), node)
	seed(0, fuzzJob.String(), node)
	seed(1, fuzzJob.String(), fuzzJobInfo())
	seed(2, fuzzJob.String(), &protos.FunctionTable{JobId: fuzzJob.Bytes(), Digest: "d", Functions: []*protos.FunctionDescriptor{{Name: "f", Signature: "func()"}}})
	f.Add(uint8(3), kvKey("ns", "k"), []byte("v"))
	f.Add(uint8(3), kvKey("", "k"), []byte(nil))
	f.Add(uint8(3), "AB.AB", []byte("v"))
	actorInfo := &protos.ActorInfo{ActorId: fuzzActor.Bytes(), Spec: fuzzActorSpec(), State: protos.ActorState_RESTARTING, NumRestarts: 1,
		NodeId: fuzzNode.Bytes(), Address: &protos.Address{Endpoint: "unix:/w.sock", Pid: 3}}
	seed(4, fuzzActor.String(), actorInfo)
	pg := &protos.PlacementGroupInfo{Spec: fuzzPGSpec(), State: protos.PlacementGroupState_PG_CREATED, BundleNodes: [][]byte{fuzzNode.Bytes(), fuzzNode.Bytes()}}
	seed(5, fuzzPG.String(), pg)
	pg.State, pg.BundleNodes[1] = protos.PlacementGroupState_PG_RESCHEDULING, nil
	seed(5, fuzzPG.String(), pg)
	for i := range loaders {
		for _, data := range edgeSeeds() {
			f.Add(uint8(i), "k", data)
		}
	}

	f.Fuzz(func(t *testing.T, which uint8, key string, value []byte) {
		l := loaders[int(which)%len(loaders)]
		if err := l.load(t, key, value); err != nil && !errors.Is(err, errBadRecord) {
			t.Fatalf("%s record refused with %v, which does not wrap errBadRecord", l.bucket, err)
		}
	})
}

// FuzzKVKey: every (namespace, key) a put accepts is stored under a NATS
// KV key that maps back to it, and every bucket key the loader accepts is
// the one its (namespace, key) is stored under.
func FuzzKVKey(f *testing.F) {
	f.Add("ns", "k")
	f.Add("", "")
	f.Add("name.space", "key/with=odd.chars")
	f.Add(strings.Repeat("n", maxKVNamespaceBytes), strings.Repeat("\u00e9", maxKVKeyBytes/2))
	f.Fuzz(func(t *testing.T, ns, key string) {
		if checkKVPut(&protos.KVPutRequest{Namespace: ns, Key: key}) == nil {
			checkStorableKey(t, ns, key)
		}
		// The inputs as a bucket key too.
		for _, k := range []string{ns, key, ns + "." + key} {
			if gotNS, gotKey, err := parseKVKey(k); err == nil && kvKey(gotNS, gotKey) != k {
				t.Fatalf("bucket key %q decodes to (%q, %q), which is stored under %q", k, gotNS, gotKey, kvKey(gotNS, gotKey))
			}
		}
	})
}
