package recordjson

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

func samples() []proto.Message {
	job, pg, node := protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()
	return []proto.Message{
		&protos.JobInfo{JobId: job.Bytes(), Executable: "/bin/x \"quoted\"\n\ttab ünï", DriverPid: -7, StartTimeUnixMs: math.MaxInt64, Finished: true,
			Env: []string{"A=1", "B=<2>"}, Binaries: []*protos.JobBinary{{Digest: strings.Repeat("ab", 32), Goos: "linux", Goarch: "amd64"}}},
		&protos.PlacementGroupInfo{Spec: &protos.PlacementGroupSpec{PlacementGroupId: pg.Bytes(), JobId: job.Bytes(), Strategy: protos.PlacementStrategy_STRICT_SPREAD,
			Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1, "GPU": 0.5, "z": math.Inf(1)}}}},
			State: protos.PlacementGroupState_PG_CREATED, BundleNodes: [][]byte{node.Bytes(), nil}, CreateTimeUnixMs: 1},
		&protos.NodeInfo{NodeId: node.Bytes(), Hostname: "h", Labels: map[string]string{"k": "v"}, Total: &protos.Resources{Amounts: map[string]float64{"CPU": 2}}},
		&protos.KVGetReply{Value: []byte{0, 1, 2, 255}, Found: true},
		&protos.Submission{SubmissionId: "s1", Status: protos.SubmissionStatus_JOB_RUNNING, Metadata: map[string]string{"b": "2", "a": "1"}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples() {
		data, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) {
			t.Fatalf("%T: not JSON: %s", m, data)
		}
		back := m.ProtoReflect().New().Interface()
		if err := Unmarshal(data, back); err != nil {
			t.Fatalf("%T: %v\n%s", m, err, data)
		}
		if !proto.Equal(m, back) {
			t.Fatalf("%T round trip:\n%v\n%v\n%s", m, m, back, data)
		}
		// The binary form of older records still reads.
		bin, _ := proto.Marshal(m)
		old := m.ProtoReflect().New().Interface()
		if err := Unmarshal(bin, old); err != nil || !proto.Equal(m, old) {
			t.Fatalf("%T from protobuf: %v", m, err)
		}
	}
}

// TestIDsAreHex: ids print as goray prints them; other bytes stay base64;
// the rest is protobuf's JSON mapping, which protojson reads.
func TestIDsAreHex(t *testing.T) {
	ms := samples()
	job := ms[0].(*protos.JobInfo)
	data, _ := Marshal(job)
	if !strings.Contains(string(data), `"job_id":"`+protos.MustUniqueID(job.GetJobId()).String()+`"`) || !strings.Contains(string(data), `"start_time_unix_ms":"9223372036854775807"`) {
		t.Fatalf("job record %s", data)
	}
	pg, _ := Marshal(ms[1])
	if !strings.Contains(string(pg), `"bundle_nodes":["`+protos.MustUniqueID(ms[1].(*protos.PlacementGroupInfo).GetBundleNodes()[0]).String()+`",""]`) ||
		!strings.Contains(string(pg), `"strategy":"STRICT_SPREAD"`) || !strings.Contains(string(pg), `"z":"Infinity"`) {
		t.Fatalf("placement group record %s", pg)
	}
	kv, _ := Marshal(ms[3])
	if !strings.Contains(string(kv), `"value":"AAEC/w=="`) {
		t.Fatalf("a value that is no id: %s", kv)
	}
	// Without the ids, protojson reads the same.
	sub := &protos.Submission{}
	data, _ = Marshal(ms[4])
	if err := protojson.Unmarshal(data, sub); err != nil || !proto.Equal(sub, ms[4]) {
		t.Fatalf("protojson reads %s: %v", data, err)
	}
	if err := Unmarshal([]byte(`{"job_id":"zz"}`), &protos.JobInfo{}); err == nil {
		t.Fatal("an id that is not hex was accepted")
	}
	if err := Unmarshal([]byte(`{"job_id":"00", "not_a_field": 1}`), &protos.JobInfo{}); err != nil {
		t.Fatalf("an unknown field: %v", err)
	}
}

func BenchmarkMarshalPlacementGroup(b *testing.B) {
	m := samples()[1]
	b.ReportAllocs()
	for range b.N {
		if _, err := Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProtoMarshalPlacementGroup(b *testing.B) {
	m := samples()[1]
	b.ReportAllocs()
	for range b.N {
		if _, err := proto.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func actorSample() *protos.ActorInfo {
	id, job, node, w := protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID(), protos.NewUniqueID()
	return &protos.ActorInfo{ActorId: id.Bytes(), State: protos.ActorState_ALIVE, StartTimeUnixMs: 1796311012201, NodeId: node.Bytes(),
		Address: &protos.Address{WorkerId: w.Bytes(), NodeId: node.Bytes(), Endpoint: "unix:/tmp/goray/session-1/sockets/w-0123abcd.sock", Pid: 4242, TcpEndpoint: "tcp:127.0.0.1:40000"},
		Spec: &protos.ActorSpec{ActorId: id.Bytes(), JobId: job.Bytes(), ClassName: "tests.Counter", FunctionDigest: "78524fe156e5eaa4",
			Args:  []*protos.TaskArg{{Value: &protos.ObjectData{Encoding: protos.Encoding_ENCODING_MSGPACK, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Size: 8}}},
			Owner: &protos.Address{WorkerId: w.Bytes(), NodeId: node.Bytes(), Endpoint: "unix:/tmp/x.sock", Pid: 1},
			Options: &protos.ActorOptions{PlacementResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}}, RunningResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}},
				Name: "counter", Namespace: "default", MaxRestarts: -1, Packed: true}}}
}

func BenchmarkMarshalActor(b *testing.B) {
	m := actorSample()
	b.ReportAllocs()
	for range b.N {
		if _, err := Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProtoMarshalActor(b *testing.B) {
	m := actorSample()
	b.ReportAllocs()
	for range b.N {
		if _, err := proto.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMarshalSpliced: a record written with a part encoded before is the
// record Marshal writes.
func TestMarshalSpliced(t *testing.T) {
	a := actorSample()
	spec, err := Marshal(a.GetSpec())
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := Marshal(a)
	spliced, err := MarshalSpliced(a, "spec", spec)
	if err != nil || string(spliced) != string(whole) {
		t.Fatalf("spliced %s\nwhole   %s (%v)", spliced, whole, err)
	}
}
