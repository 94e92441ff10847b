package gcs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordCase is a stored record and whether its bucket's decoder takes it.
type recordCase struct {
	name  string
	key   string
	value []byte
	ok    bool
}

func runRecordCases(t *testing.T, decode func(key string, value []byte) error, cases []recordCase) {
	t.Helper()
	for _, tc := range cases {
		err := decode(tc.key, tc.value)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && err == nil:
			t.Errorf("%s: accepted", tc.name)
		case !tc.ok && !errors.Is(err, errBadRecord):
			t.Errorf("%s: %v does not wrap errBadRecord", tc.name, err)
		}
	}
}

// Records that no decoder may take, whatever the bucket.
func junkRecords(key string) []recordCase {
	return []recordCase{
		{"garbage", key, []byte{0xff, 0xff, 0xff}, false},
		{"empty", key, nil, false},
		{"oversized", key, make([]byte, maxMessageBytes+1), false},
	}
}

func TestNodeRecords(t *testing.T) {
	t.Parallel()
	n := validNode()
	key := protos.MustUniqueID(n.GetNodeId()).String()
	bad := proto.CloneOf(n)
	bad.State = 9
	runRecordCases(t, func(k string, v []byte) error {
		id, info, err := decodeNodeRecord(k, v)
		if err == nil && (id.String() != k || !proto.Equal(info, n)) {
			t.Errorf("decoded %s %v", id, info)
		}
		return err
	}, append(junkRecords(key),
		recordCase{"valid", key, marshal(t, n), true},
		recordCase{"other key", protos.NewUniqueID().String(), marshal(t, n), false},
		recordCase{"unknown state", key, marshal(t, bad), false},
	))
}

func TestJobAndFunctionRecords(t *testing.T) {
	t.Parallel()
	j := newJob("/bin/d")
	key := protos.MustUniqueID(j.GetJobId()).String()
	bad := proto.CloneOf(j)
	bad.Env = []string{"no equals sign"}
	runRecordCases(t, func(k string, v []byte) error { _, _, err := decodeJobRecord(k, v); return err },
		append(junkRecords(key),
			recordCase{"valid", key, marshal(t, j), true},
			recordCase{"other key", "job", marshal(t, j), false},
			recordCase{"bad env", key, marshal(t, bad), false},
		))

	ft := &protos.FunctionTable{JobId: j.GetJobId(), Digest: "d", Functions: []*protos.FunctionDescriptor{{Name: "f"}}}
	long := proto.CloneOf(ft)
	long.Digest = strings.Repeat("d", maxDigestBytes+1)
	runRecordCases(t, func(k string, v []byte) error { _, _, err := decodeFunctionRecord(k, v); return err },
		append(junkRecords(key),
			recordCase{"valid", key, marshal(t, ft), true},
			recordCase{"other key", strings.ToUpper(key), marshal(t, ft), false},
			recordCase{"long digest", key, marshal(t, long), false},
		))
}

func TestKVRecords(t *testing.T) {
	t.Parallel()
	runRecordCases(t, func(k string, v []byte) error {
		ns, key, err := decodeKVRecord(k, v)
		if err == nil && kvKey(ns, key) != k {
			t.Errorf("%q decodes to (%q, %q), stored under %q", k, ns, key, kvKey(ns, key))
		}
		return err
	}, []recordCase{
		{"valid", kvKey("ns", "k"), []byte("v"), true},
		{"empty namespace", kvKey("", "k"), nil, true},
		{"empty key", kvKey("ns", ""), []byte("v"), false},
		{"one token", "bnM", []byte("v"), false},
		{"three tokens", "bnM.aw.aw", []byte("v"), false},
		{"not base64", "bnM.a!", []byte("v"), false},
		{"padded", "bnM=.aw", []byte("v"), false},
		{"non-zero trailing bits", "AB.AB", []byte("v"), false}, // "AA.AA" spelled otherwise
		{"empty tokens", ".", []byte("v"), false},               // "=.=" spelled otherwise
		{"line break", "bn\nM.aw", []byte("v"), false},
		{"long key", kvKey("ns", strings.Repeat("k", maxKVKeyBytes+1)), []byte("v"), false},
		{"large value", kvKey("ns", "k"), make([]byte, maxKVValueBytes+1), false},
	})
}

func validActorInfo() *protos.ActorInfo {
	spec := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{Name: "c", MaxRestarts: -1})
	return &protos.ActorInfo{ActorId: spec.GetActorId(), Spec: spec, State: protos.ActorState_ALIVE,
		NodeId: protos.NewUniqueID().Bytes(), Address: &protos.Address{Endpoint: "unix:/w.sock", Pid: 7}}
}

func TestActorRecords(t *testing.T) {
	t.Parallel()
	a := validActorInfo()
	key := protos.MustUniqueID(a.GetActorId()).String()
	mod := func(f func(a *protos.ActorInfo)) []byte {
		b := proto.CloneOf(a)
		f(b)
		return marshal(t, b)
	}
	runRecordCases(t, func(k string, v []byte) error {
		r, err := decodeActorRecord(k, v)
		if err == nil && (r.id.String() != k || !bytesEqualID(r.info.GetSpec().GetJobId(), r.job)) {
			t.Errorf("decoded %v", r)
		}
		return err
	}, append(junkRecords(key),
		recordCase{"valid", key, marshal(t, a), true},
		recordCase{"other key", protos.NewUniqueID().String(), marshal(t, a), false},
		recordCase{"no spec", key, mod(func(a *protos.ActorInfo) { a.Spec = nil }), false},
		recordCase{"bad spec", key, mod(func(a *protos.ActorInfo) { a.Spec.ClassName = "" }), false},
		recordCase{"spec of another actor", key, mod(func(a *protos.ActorInfo) { a.Spec.ActorId = protos.NewUniqueID().Bytes() }), false},
		recordCase{"unknown state", key, mod(func(a *protos.ActorInfo) { a.State = 5 }), false},
		recordCase{"negative restarts", key, mod(func(a *protos.ActorInfo) { a.NumRestarts = -1 }), false},
		recordCase{"bad node", key, mod(func(a *protos.ActorInfo) { a.NodeId = []byte{1} }), false},
	))
}

func bytesEqualID(b []byte, id protos.UniqueID) bool { return string(b) == string(id[:]) }

func TestPlacementGroupRecords(t *testing.T) {
	t.Parallel()
	spec := &protos.PlacementGroupSpec{PlacementGroupId: protos.NewUniqueID().Bytes(), JobId: protos.NewUniqueID().Bytes(),
		Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}, {Amounts: map[string]float64{"CPU": 1}}}}
	g := &protos.PlacementGroupInfo{Spec: spec, State: protos.PlacementGroupState_PG_CREATED,
		BundleNodes: [][]byte{protos.NewUniqueID().Bytes(), protos.NewUniqueID().Bytes()}}
	key := protos.MustUniqueID(spec.GetPlacementGroupId()).String()
	mod := func(f func(g *protos.PlacementGroupInfo)) []byte {
		b := proto.CloneOf(g)
		f(b)
		return marshal(t, b)
	}
	runRecordCases(t, func(k string, v []byte) error {
		e, err := decodePGRecord(k, v)
		if err == nil && (e.id.String() != k || len(e.bundles) != len(e.info.GetSpec().GetBundles())) {
			t.Errorf("decoded %+v", e)
		}
		return err
	}, append(junkRecords(key),
		recordCase{"created", key, marshal(t, g), true},
		recordCase{"rescheduling", key, mod(func(g *protos.PlacementGroupInfo) {
			g.State, g.BundleNodes[1] = protos.PlacementGroupState_PG_RESCHEDULING, nil
		}), true},
		recordCase{"pending", key, mod(func(g *protos.PlacementGroupInfo) {
			g.State, g.BundleNodes = protos.PlacementGroupState_PG_PENDING, nil
		}), true},
		recordCase{"other key", protos.NewUniqueID().String(), marshal(t, g), false},
		recordCase{"no spec", key, mod(func(g *protos.PlacementGroupInfo) { g.Spec = nil }), false},
		recordCase{"no bundles", key, mod(func(g *protos.PlacementGroupInfo) { g.Spec.Bundles, g.BundleNodes = nil, nil }), false},
		recordCase{"unknown state", key, mod(func(g *protos.PlacementGroupInfo) { g.State = 8 }), false},
		recordCase{"nodes for other bundles", key, mod(func(g *protos.PlacementGroupInfo) { g.BundleNodes = g.BundleNodes[:1] }), false},
		recordCase{"short node id", key, mod(func(g *protos.PlacementGroupInfo) { g.BundleNodes[0] = []byte{1, 2} }), false},
	))
}

// TestBadRecordsSkipped plants records no manager can use in every bucket
// beside good ones, and restarts the GCS on that store: it starts, skips
// them, and serves the good ones.
func TestBadRecordsSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := runServer(t, Options{StoreDir: dir, NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	node, job := newNode("good"), newJob("good")
	must(t, c.RegisterNode(ctx, node))
	must(t, c.RegisterJob(ctx, job))
	_, err := c.KVPut(ctx, "ns", "good", []byte("v"), false)
	must(t, err)

	js, err := jetstream.New(c.NATS())
	must(t, err)
	plant := func(bucket, key string, value []byte) {
		t.Helper()
		kv, err := js.KeyValue(ctx, bucket)
		must(t, err)
		_, err = kv.Put(ctx, key, value)
		must(t, err)
	}
	garbage := []byte{0x0a, 0xff, 0xff, 0xff, 0x0f}
	for _, b := range []string{BucketNodes, BucketJobs, BucketFunctions, BucketActors, BucketPlacementGroups} {
		plant(b, protos.NewUniqueID().String(), garbage)
		plant(b, "not-an-id", garbage)
	}
	unknownState := validNode()
	unknownState.State = 42
	plant(BucketNodes, protos.MustUniqueID(unknownState.GetNodeId()).String(), marshal(t, unknownState))
	plant(BucketNodes, protos.NewUniqueID().String(), marshal(t, validNode())) // under another id's key
	a := validActorInfo()
	a.Spec.Options.Strategy = &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY}
	plant(BucketActors, protos.MustUniqueID(a.GetActorId()).String(), marshal(t, a))
	plant(BucketKV, "bm90LWI2NA.a/b", []byte("v"))
	plant(BucketKV, kvKey("ns", ""), []byte("empty key"))
	srv.Shutdown()

	srv2 := runServer(t, Options{StoreDir: dir, NodeTimeout: time.Minute})
	c2 := dial(t, srv2.ClientURL())
	nodes, err := c2.ListNodes(ctx)
	must(t, err)
	if len(nodes) != 1 || string(nodes[0].GetNodeId()) != string(node.GetNodeId()) {
		t.Errorf("nodes after restart: %v", nodes)
	}
	jobs, err := c2.ListJobs(ctx)
	must(t, err)
	if len(jobs) != 1 {
		t.Errorf("jobs after restart: %v", jobs)
	}
	actors, err := c2.ListActors(ctx, protos.JobID{})
	must(t, err)
	if len(actors) != 0 {
		t.Errorf("actors after restart: %v", actors)
	}
	groups, err := c2.ListPlacementGroups(ctx)
	must(t, err)
	if len(groups) != 0 {
		t.Errorf("groups after restart: %v", groups)
	}
	if v, ok, err := c2.KVGet(ctx, "ns", "good"); err != nil || !ok || string(v) != "v" {
		t.Errorf("good KV after restart: %q %v %v", v, ok, err)
	}
	if keys, err := c2.KVKeys(ctx, "ns", ""); err != nil || len(keys) != 1 {
		t.Errorf("KV keys after restart: %q %v", keys, err)
	}
	if _, err := c2.GetFunctions(ctx, protos.MustUniqueID(job.GetJobId())); !errors.Is(err, ErrNotFound) {
		t.Errorf("functions after restart: %v", err)
	}
}
