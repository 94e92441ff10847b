package gcs

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/goray/goray/protos"
	"google.golang.org/protobuf/proto"
)

// checkCase is one row of a validator's table: want is "" for a valid
// message, else a substring of the error, which must wrap ErrInvalid.
type checkCase[M any] struct {
	name string
	msg  M
	want string
}

func runChecks[M any](t *testing.T, check func(M) error, cases []checkCase[M]) {
	t.Helper()
	for _, tc := range cases {
		err := check(tc.msg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.want != "" && err == nil:
			t.Errorf("%s: accepted", tc.name)
		case tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want ErrInvalid containing %q", tc.name, err, tc.want)
		}
	}
}

func validNode() *protos.NodeInfo {
	n := newNode("h")
	n.RayletTcpEndpoint = "tcp:10.0.0.1:7000"
	n.Total = &protos.Resources{Amounts: map[string]float64{"CPU": 8, "memory": 64e9, "CPU_group_0_0123456789abcdef0123456789abcdef": 1}}
	n.Available = &protos.Resources{Amounts: map[string]float64{"CPU": -0.5, "memory": 1e9}}
	n.Labels = map[string]string{"zone": "a"}
	n.Pending = []*protos.ResourceDemand{{Shape: &protos.Resources{Amounts: map[string]float64{"GPU": 1}}, Count: 3,
		Labels: map[string]*protos.LabelValues{"zone": {Values: []string{"a", "b"}}}}}
	n.State = protos.NodeInfo_ALIVE
	return n
}

func TestCheckRegisterNode(t *testing.T) {
	t.Parallel()
	with := func(mod func(n *protos.NodeInfo)) *protos.RegisterNodeRequest {
		n := validNode()
		mod(n)
		return &protos.RegisterNodeRequest{Node: n}
	}
	runChecks(t, checkRegisterNode, []checkCase[*protos.RegisterNodeRequest]{
		{"valid", with(func(*protos.NodeInfo) {}), ""},
		{"minimal", &protos.RegisterNodeRequest{Node: &protos.NodeInfo{NodeId: protos.NewUniqueID().Bytes()}}, ""},
		{"no node", &protos.RegisterNodeRequest{}, "node: required"},
		{"long id", with(func(n *protos.NodeInfo) { n.NodeId = make([]byte, 17) }), "node.node_id: id has 17 bytes"},
		{"zero id", with(func(n *protos.NodeInfo) { n.NodeId = make([]byte, 16) }), "node.node_id: id is all zero"},
		{"unknown state", with(func(n *protos.NodeInfo) { n.State = 3 }), "node.state: unknown value 3"},
		{"bad endpoint", with(func(n *protos.NodeInfo) { n.RayletEndpoint = "/tmp/r.sock" }), "node.raylet_endpoint"},
		{"bad tcp endpoint", with(func(n *protos.NodeInfo) { n.RayletTcpEndpoint = "udp:h:1" }), "node.raylet_tcp_endpoint"},
		{"long hostname", with(func(n *protos.NodeInfo) { n.Hostname = strings.Repeat("h", maxNameBytes+1) }), "node.hostname"},
		{"long spill dir", with(func(n *protos.NodeInfo) {
			n.StoreStats = &protos.StoreStats{SpillDir: strings.Repeat("d", maxPathBytes+1)}
		}), "node.store_stats.spill_dir"},
		{"negative total", with(func(n *protos.NodeInfo) { n.Total.Amounts["CPU"] = -1 }), "node.total"},
		{"NaN available", with(func(n *protos.NodeInfo) { n.Available.Amounts["CPU"] = math.NaN() }), "node.available"},
		{"infinite available", with(func(n *protos.NodeInfo) { n.Available.Amounts["CPU"] = math.Inf(-1) }), "node.available"},
		{"huge total", with(func(n *protos.NodeInfo) { n.Total.Amounts["memory"] = 2 * maxResourceQuantity }), "node.total"},
		{"unnamed resource", with(func(n *protos.NodeInfo) { n.Total.Amounts[""] = 1 }), "node.total: resource with an empty name"},
		{"long resource name", with(func(n *protos.NodeInfo) { n.Total.Amounts[strings.Repeat("r", maxResourceNameBytes+1)] = 1 }), "node.total: resource name"},
		{"unnamed label", with(func(n *protos.NodeInfo) { n.Labels[""] = "x" }), "node.labels"},
		{"too many labels", with(func(n *protos.NodeInfo) {
			for i := range maxLabels + 1 {
				n.Labels[strings.Repeat("k", i+1)] = "v"
			}
		}), "node.labels: 1026 entries"},
		{"negative demand", with(func(n *protos.NodeInfo) { n.Pending[0].Count = -1 }), "node.pending: negative count"},
		{"demand selector without values", with(func(n *protos.NodeInfo) {
			n.Infeasible = []*protos.ResourceDemand{{Labels: map[string]*protos.LabelValues{"zone": {}}}}
		}), "node.infeasible"},
	})
}

func TestCheckNodeReport(t *testing.T) {
	t.Parallel()
	runChecks(t, checkNodeReport, []checkCase[*protos.NodeReport]{
		{"valid", &protos.NodeReport{Node: validNode()}, ""},
		{"no node", &protos.NodeReport{}, "node: required"},
		{"bad id", &protos.NodeReport{Node: &protos.NodeInfo{NodeId: []byte("short")}}, "node.node_id"},
	})
}

func TestCheckJobsAndFunctions(t *testing.T) {
	t.Parallel()
	with := func(mod func(j *protos.JobInfo)) *protos.RegisterJobRequest {
		j := newJob("/bin/driver")
		j.Env = []string{"A=1", "GORAY_LOG_LEVEL=debug", "EMPTY="}
		j.BinaryDigest = strings.Repeat("a", 64)
		mod(j)
		return &protos.RegisterJobRequest{Job: j}
	}
	runChecks(t, checkRegisterJob, []checkCase[*protos.RegisterJobRequest]{
		{"valid", with(func(*protos.JobInfo) {}), ""},
		{"no job", &protos.RegisterJobRequest{}, "job: required"},
		{"no id", with(func(j *protos.JobInfo) { j.JobId = nil }), "job.job_id"},
		{"negative pid", with(func(j *protos.JobInfo) { j.DriverPid = -1 }), "job.driver_pid"},
		{"long executable", with(func(j *protos.JobInfo) { j.Executable = strings.Repeat("x", maxPathBytes+1) }), "job.executable"},
		{"long digest", with(func(j *protos.JobInfo) { j.FunctionDigest = strings.Repeat("f", maxDigestBytes+1) }), "job.function_digest"},
		{"env without =", with(func(j *protos.JobInfo) { j.Env = []string{"PATH"} }), "job.env: entry 0 is not NAME=value"},
		{"env without name", with(func(j *protos.JobInfo) { j.Env = []string{"A=1", "=x"} }), "job.env: entry 1 is not NAME=value"},
		{"env with NUL", with(func(j *protos.JobInfo) { j.Env = []string{"A=\x00"} }), "job.env: entry 0 contains a NUL byte"},
		{"long env entry", with(func(j *protos.JobInfo) { j.Env = []string{"A=" + strings.Repeat("v", maxEnvEntryBytes)} }), "job.env: entry 0 has"},
		{"too many env entries", with(func(j *protos.JobInfo) { j.Env = make([]string, maxEnvEntries+1) }), "job.env: 16385 entries"},
		{"runtime env", with(func(j *protos.JobInfo) {
			j.RuntimeEnv = &protos.RuntimeEnv{EnvVars: []string{"A=1"}, PackageDigest: strings.Repeat("b", 64)}
			j.Binaries = []*protos.JobBinary{{Goos: "linux", Goarch: "amd64", Digest: strings.Repeat("a", 64)}}
		}), ""},
		{"runtime env var without =", with(func(j *protos.JobInfo) { j.RuntimeEnv = &protos.RuntimeEnv{EnvVars: []string{"A"}} }), "job.runtime_env: env_vars"},
		{"package digest not hex", with(func(j *protos.JobInfo) { j.RuntimeEnv = &protos.RuntimeEnv{PackageDigest: "../../etc"} }), "job.runtime_env: package_digest"},
		{"binary digest not hex", with(func(j *protos.JobInfo) {
			j.Binaries = []*protos.JobBinary{{Goos: "linux", Goarch: "amd64", Digest: "x"}}
		}), "job.binaries"},
		{"binary platform", with(func(j *protos.JobInfo) {
			j.Binaries = []*protos.JobBinary{{Goos: "linux/../", Goarch: "amd64", Digest: strings.Repeat("a", 64)}}
		}), "job.binaries: binaries: platform"},
	})
	runChecks(t, checkFinishJob, []checkCase[*protos.FinishJobRequest]{
		{"valid", &protos.FinishJobRequest{JobId: protos.NewUniqueID().Bytes()}, ""},
		{"empty", &protos.FinishJobRequest{}, "job_id: id has 0 bytes"},
	})

	table := func(mod func(t *protos.FunctionTable)) *protos.RegisterFunctionsRequest {
		t := &protos.FunctionTable{JobId: protos.NewUniqueID().Bytes(), Digest: "d",
			Functions: []*protos.FunctionDescriptor{{Name: "main.Add", Signature: "func(int, int) int"}}}
		mod(t)
		return &protos.RegisterFunctionsRequest{Table: t}
	}
	runChecks(t, checkRegisterFunctions, []checkCase[*protos.RegisterFunctionsRequest]{
		{"valid", table(func(*protos.FunctionTable) {}), ""},
		{"no table", &protos.RegisterFunctionsRequest{}, "table: required"},
		{"zero job", table(func(t *protos.FunctionTable) { t.JobId = make([]byte, 16) }), "table.job_id: id is all zero"},
		{"long signature", table(func(t *protos.FunctionTable) {
			t.Functions[0].Signature = strings.Repeat("s", maxSignatureBytes+1)
		}), "table.functions"},
		{"too many functions", table(func(t *protos.FunctionTable) {
			t.Functions = make([]*protos.FunctionDescriptor, maxFunctions+1)
		}), "table.functions: 65537 entries"},
	})
	runChecks(t, checkGetFunctions, []checkCase[*protos.GetFunctionsRequest]{
		{"valid", &protos.GetFunctionsRequest{JobId: protos.NewUniqueID().Bytes()}, ""},
		{"short", &protos.GetFunctionsRequest{JobId: []byte{1}}, "job_id"},
	})
}

func TestCheckKV(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", maxKVKeyBytes+1)
	runChecks(t, checkKVPut, []checkCase[*protos.KVPutRequest]{
		{"valid", &protos.KVPutRequest{Namespace: "ns", Key: "k", Value: []byte("v")}, ""},
		{"largest", &protos.KVPutRequest{Namespace: strings.Repeat("n", maxKVNamespaceBytes), Key: long[1:], Value: make([]byte, maxKVValueBytes)}, ""},
		{"empty key", &protos.KVPutRequest{Namespace: "ns"}, "key: required"},
		{"long key", &protos.KVPutRequest{Key: long}, "key: 1025 bytes"},
		{"long namespace", &protos.KVPutRequest{Namespace: strings.Repeat("n", maxKVNamespaceBytes+1), Key: "k"}, "namespace: 257 bytes"},
		{"large value", &protos.KVPutRequest{Key: "k", Value: make([]byte, maxKVValueBytes+1)}, "value: 1048577 bytes"},
	})
	runChecks(t, checkKVGet, []checkCase[*protos.KVGetRequest]{
		{"valid", &protos.KVGetRequest{Key: "k"}, ""},
		{"empty key", &protos.KVGetRequest{}, ""}, // found nowhere, but a fair question
		{"long key", &protos.KVGetRequest{Key: long}, "key"},
	})
	runChecks(t, checkKVDelete, []checkCase[*protos.KVDeleteRequest]{
		{"valid", &protos.KVDeleteRequest{Key: "k"}, ""},
		{"long namespace", &protos.KVDeleteRequest{Namespace: long, Key: "k"}, "namespace"},
	})
	runChecks(t, checkKVKeys, []checkCase[*protos.KVKeysRequest]{
		{"valid", &protos.KVKeysRequest{Namespace: "ns", Prefix: "p"}, ""},
		{"long prefix", &protos.KVKeysRequest{Prefix: long}, "key"},
	})
}

func TestCheckActorRequests(t *testing.T) {
	t.Parallel()
	runChecks(t, checkGetActor, []checkCase[*protos.GetActorRequest]{
		{"by id", &protos.GetActorRequest{ActorId: protos.NewUniqueID().Bytes()}, ""},
		{"by name", &protos.GetActorRequest{Name: "a", Namespace: "n"}, ""},
		{"neither", &protos.GetActorRequest{Namespace: "n"}, "actor_id: an actor id or a name is required"},
		{"bad id", &protos.GetActorRequest{ActorId: []byte{1}, Name: "a"}, "actor_id: id has 1 bytes"},
		{"long name", &protos.GetActorRequest{Name: strings.Repeat("a", maxNameBytes+1)}, "name: 1025 bytes"},
	})
	runChecks(t, checkListActors, []checkCase[*protos.ListActorsRequest]{
		{"all", &protos.ListActorsRequest{}, ""},
		{"job", &protos.ListActorsRequest{JobId: protos.NewUniqueID().Bytes()}, ""},
		{"zero job", &protos.ListActorsRequest{JobId: make([]byte, 16)}, "job_id: id is all zero"},
	})
	runChecks(t, checkKillActor, []checkCase[*protos.KillActorGcsRequest]{
		{"valid", &protos.KillActorGcsRequest{ActorId: protos.NewUniqueID().Bytes(), NoRestart: true}, ""},
		{"no id", &protos.KillActorGcsRequest{}, "actor_id"},
	})
}

func TestCheckPlacementGroups(t *testing.T) {
	t.Parallel()
	bundle := func(amounts map[string]float64) *protos.Resources { return &protos.Resources{Amounts: amounts} }
	with := func(mod func(s *protos.PlacementGroupSpec)) *protos.CreatePlacementGroupRequest {
		s := &protos.PlacementGroupSpec{PlacementGroupId: protos.NewUniqueID().Bytes(), JobId: protos.NewUniqueID().Bytes(),
			Name: "g", Strategy: protos.PlacementStrategy_STRICT_SPREAD,
			Bundles: []*protos.Resources{bundle(map[string]float64{"CPU": 1}), bundle(map[string]float64{"CPU": 0.5, "GPU": 1})}}
		mod(s)
		return &protos.CreatePlacementGroupRequest{Spec: s}
	}
	runChecks(t, checkCreatePG, []checkCase[*protos.CreatePlacementGroupRequest]{
		{"valid", with(func(*protos.PlacementGroupSpec) {}), ""},
		{"without job", with(func(s *protos.PlacementGroupSpec) { s.JobId = nil }), ""},
		{"no spec", &protos.CreatePlacementGroupRequest{}, "spec: required"},
		{"bad id", with(func(s *protos.PlacementGroupSpec) { s.PlacementGroupId = []byte("x") }), "spec.placement_group_id"},
		{"bad job", with(func(s *protos.PlacementGroupSpec) { s.JobId = make([]byte, 16) }), "spec.job_id: id is all zero"},
		{"unknown strategy", with(func(s *protos.PlacementGroupSpec) { s.Strategy = 4 }), "spec.strategy: unknown value 4"},
		{"no bundles", with(func(s *protos.PlacementGroupSpec) { s.Bundles = nil }), "spec.bundles: a placement group needs at least one bundle"},
		{"too many bundles", with(func(s *protos.PlacementGroupSpec) {
			s.Bundles = make([]*protos.Resources, maxBundles+1)
		}), "spec.bundles: 4097 bundles"},
		{"empty bundle", with(func(s *protos.PlacementGroupSpec) { s.Bundles[1] = bundle(nil) }), "spec.bundles: bundle 1 is empty"},
		{"zero amount", with(func(s *protos.PlacementGroupSpec) { s.Bundles[0].Amounts["CPU"] = 0 }), "bundle 0: resource \"CPU\""},
		{"below resolution", with(func(s *protos.PlacementGroupSpec) { s.Bundles[0].Amounts["CPU"] = 1e-6 }), "bundle 0"},
		{"NaN", with(func(s *protos.PlacementGroupSpec) { s.Bundles[0].Amounts["CPU"] = math.NaN() }), "bundle 0"},
		{"huge", with(func(s *protos.PlacementGroupSpec) { s.Bundles[0].Amounts["CPU"] = math.Inf(1) }), "bundle 0"},
		{"sum overflows", with(func(s *protos.PlacementGroupSpec) {
			s.Bundles[0].Amounts["GPU"], s.Bundles[1].Amounts["GPU"] = maxResourceQuantity, maxResourceQuantity
		}), `resource "GPU": the bundles add up to more than`},
		{"long name", with(func(s *protos.PlacementGroupSpec) { s.Name = strings.Repeat("g", maxNameBytes+1) }), "spec.name"},
	})
	runChecks(t, checkGetPG, []checkCase[*protos.GetPlacementGroupRequest]{
		{"by id", &protos.GetPlacementGroupRequest{PlacementGroupId: protos.NewUniqueID().Bytes()}, ""},
		{"by name", &protos.GetPlacementGroupRequest{Name: "g"}, ""},
		{"neither", &protos.GetPlacementGroupRequest{}, "placement_group_id: id has 0 bytes"},
		{"long namespace", &protos.GetPlacementGroupRequest{Name: "g", Namespace: strings.Repeat("n", maxNameBytes+1)}, "namespace"},
	})
	runChecks(t, checkRemovePG, []checkCase[*protos.RemovePlacementGroupRequest]{
		{"valid", &protos.RemovePlacementGroupRequest{PlacementGroupId: protos.NewUniqueID().Bytes()}, ""},
		{"zero", &protos.RemovePlacementGroupRequest{PlacementGroupId: make([]byte, 16)}, "is all zero"},
	})
}

// TestDecodeRequest: what a handler answers for a request that is too
// large, does not decode, or fails its check.
func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	if _, e := decodeRequest[protos.KVGetRequest](SubjectKVGet, make([]byte, maxMessageBytes+1), checkKVGet); e.GetCode() != CodeInvalid ||
		!strings.Contains(e.GetMessage(), SubjectKVGet+": request of 8388609 bytes") {
		t.Errorf("oversized request: %v", e)
	}
	if _, e := decodeRequest[protos.KVGetRequest](SubjectKVGet, []byte{0xff}, checkKVGet); e.GetCode() != CodeInvalid ||
		!strings.Contains(e.GetMessage(), SubjectKVGet+": cannot decode request as goray.v1.KVGetRequest") {
		t.Errorf("undecodable request: %v", e)
	}
	data, err := proto.Marshal(&protos.KVPutRequest{Namespace: "ns"})
	must(t, err)
	_, e := decodeRequest[protos.KVPutRequest](SubjectKVPut, data, checkKVPut)
	if e.GetCode() != CodeInvalid || e.GetMessage() != SubjectKVPut+": key: required" {
		t.Errorf("bad field: %v", e)
	}
	if err := replyError(SubjectKVPut, e); !errors.Is(err, ErrInvalid) {
		t.Errorf("client side: %v does not wrap ErrInvalid", err)
	}
	data, err = proto.Marshal(&protos.KVPutRequest{Namespace: "ns", Key: "k"})
	must(t, err)
	if req, e := decodeRequest[protos.KVPutRequest](SubjectKVPut, data, checkKVPut); e != nil || req.GetKey() != "k" {
		t.Errorf("valid request: %v, %v", req, e)
	}
	if _, e := decodeRequest[protos.ListNodesRequest](SubjectNodeList, nil, nil); e != nil {
		t.Errorf("request without fields: %v", e)
	}
}

// The checks of the hottest requests allocate nothing on valid input.
func BenchmarkCheckNodeReport(b *testing.B) {
	r := &protos.NodeReport{Node: validNode()}
	b.ReportAllocs()
	for b.Loop() {
		if err := checkNodeReport(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckKVGet(b *testing.B) {
	r := &protos.KVGetRequest{Namespace: "ns", Key: "some/key"}
	b.ReportAllocs()
	for b.Loop() {
		if err := checkKVGet(r); err != nil {
			b.Fatal(err)
		}
	}
}

func TestChecksDoNotAllocate(t *testing.T) {
	report := &protos.NodeReport{Node: validNode()}
	get := &protos.KVGetRequest{Namespace: "ns", Key: "k"}
	put := &protos.KVPutRequest{Namespace: "ns", Key: "k", Value: []byte("v")}
	spec := &protos.RegisterActorRequest{Spec: actorSpec(protos.NewUniqueID(), "C", &protos.ActorOptions{
		PlacementResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}}})}
	for name, check := range map[string]func() error{
		"NodeReport":     func() error { return checkNodeReport(report) },
		"KVGet":          func() error { return checkKVGet(get) },
		"KVPut":          func() error { return checkKVPut(put) },
		"RegisterActor":  func() error { return checkRegisterActor(spec) },
		"ListActors all": func() error { return checkListActors(&protos.ListActorsRequest{}) },
	} {
		if n := testing.AllocsPerRun(100, func() { must(t, check()) }); n != 0 {
			t.Errorf("%s: %v allocations per check", name, n)
		}
	}
}
