package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

func TestNodeRoundTrip(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	events := subscribeEvents[protos.NodeInfo](t, c.NATS(), SubjectNodeEvents)

	a, b := newNode("a"), newNode("b")
	a.IsHead = true
	for _, n := range []*protos.NodeInfo{a, b} {
		if err := c.RegisterNode(ctx, n); err != nil {
			t.Fatalf("RegisterNode: %v", err)
		}
		ev := nextEvent(t, events)
		if !bytes.Equal(ev.GetNodeId(), n.GetNodeId()) || ev.GetState() != protos.NodeInfo_ALIVE {
			t.Fatalf("register event = %v", ev)
		}
	}
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("ListNodes = %d nodes, want 2", len(nodes))
	}
	for _, n := range nodes {
		if n.GetState() != protos.NodeInfo_ALIVE || n.GetStartTimeUnixMs() == 0 {
			t.Errorf("node %x: state %v start %d", n.GetNodeId(), n.GetState(), n.GetStartTimeUnixMs())
		}
	}

	// A report replaces the node's view of itself.
	upd := proto.CloneOf(a)
	upd.NumWorkers = 7
	upd.StoreUsed = 99
	if err := c.ReportNode(upd); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		nodes, err := c.ListNodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if bytes.Equal(n.GetNodeId(), a.GetNodeId()) && n.GetNumWorkers() == 7 && n.GetStoreUsed() == 99 {
				return nil
			}
		}
		return fmt.Errorf("report not applied: %v", nodes)
	})

	if err := c.UnregisterNode(ctx, protos.MustUniqueID(b.GetNodeId())); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events); ev.GetState() != protos.NodeInfo_DEAD || !bytes.Equal(ev.GetNodeId(), b.GetNodeId()) {
		t.Fatalf("unregister event = %v", ev)
	}
	nodes, _ = c.ListNodes(ctx)
	if st := stateOf(nodes, b); st != protos.NodeInfo_DEAD {
		t.Errorf("unregistered node state %v, want DEAD", st)
	}
	// Unregistering twice is harmless.
	if err := c.UnregisterNode(ctx, protos.MustUniqueID(b.GetNodeId())); err != nil {
		t.Errorf("second unregister: %v", err)
	}

	err = c.UnregisterNode(ctx, protos.NewUniqueID())
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unregister unknown node: %v, want ErrNotFound", err)
	}
	err = c.RegisterNode(ctx, &protos.NodeInfo{NodeId: []byte{1, 2, 3}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node.node_id") {
		t.Errorf("register short id: %v, want ErrInvalid naming the node id", err)
	}
	if err := c.RegisterNode(ctx, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("register nil node: %v, want ErrInvalid", err)
	}
}

func stateOf(nodes []*protos.NodeInfo, n *protos.NodeInfo) protos.NodeInfo_State {
	for _, x := range nodes {
		if bytes.Equal(x.GetNodeId(), n.GetNodeId()) {
			return x.GetState()
		}
	}
	return protos.NodeInfo_STATE_UNSPECIFIED
}

func TestNodeDeadAfterReportsStop(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{NodeTimeout: 300 * time.Millisecond})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	events := subscribeEvents[protos.NodeInfo](t, c.NATS(), SubjectNodeEvents)

	n := newNode("dying")
	if err := c.RegisterNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events) // ALIVE

	// While it reports, it stays alive well past the timeout.
	start := time.Now()
	for time.Since(start) < 3*srv.opts.NodeTimeout {
		if err := c.ReportNode(n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(srv.opts.NodeTimeout / 6) // report cadence, not a wait for a result
	}
	nodes, _ := c.ListNodes(ctx)
	if st := stateOf(nodes, n); st != protos.NodeInfo_ALIVE {
		t.Fatalf("reporting node state %v, want ALIVE", st)
	}

	// Reports stop: the node is declared dead and an event says so.
	ev := nextEvent(t, events)
	if ev.GetState() != protos.NodeInfo_DEAD || !bytes.Equal(ev.GetNodeId(), n.GetNodeId()) {
		t.Fatalf("event %v, want DEAD for the node", ev)
	}
	nodes, _ = c.ListNodes(ctx)
	if st := stateOf(nodes, n); st != protos.NodeInfo_DEAD {
		t.Fatalf("state %v after reports stopped, want DEAD", st)
	}

	// A late report does not resurrect it; registering again does.
	if err := c.ReportNode(n); err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	nodes, _ = c.ListNodes(ctx)
	if st := stateOf(nodes, n); st != protos.NodeInfo_ALIVE {
		t.Fatalf("state %v after re-register, want ALIVE", st)
	}
}

func TestReportFromUnknownNodeRegistersIt(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)

	n := newNode("late")
	// Misrouted: published under another node's subject. Must be ignored.
	data, _ := proto.Marshal(&protos.NodeReport{Node: n})
	if err := c.NATS().Publish(NodeReportSubject(protos.NewUniqueID()), data); err != nil {
		t.Fatal(err)
	}
	if err := c.ReportNode(n); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		nodes, err := c.ListNodes(ctx)
		if err != nil {
			return err
		}
		if len(nodes) != 1 || stateOf(nodes, n) != protos.NodeInfo_ALIVE {
			return fmt.Errorf("nodes = %v", nodes)
		}
		return nil
	})
}

func TestJobRoundTrip(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	events := subscribeEvents[protos.JobInfo](t, c.NATS(), SubjectJobEvents)

	j1, j2 := newJob("driver1"), newJob("driver2")
	j1.StartTimeUnixMs = 1000
	for _, j := range []*protos.JobInfo{j1, j2} {
		if err := c.RegisterJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, events); !bytes.Equal(ev.GetJobId(), j.GetJobId()) || ev.GetFinished() {
			t.Fatalf("register event %v", ev)
		}
	}
	jobs, err := c.ListJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || !bytes.Equal(jobs[0].GetJobId(), j1.GetJobId()) {
		t.Fatalf("ListJobs = %v, want j1 (older) first", jobs)
	}
	if jobs[1].GetStartTimeUnixMs() == 0 || jobs[1].GetExecutable() != "driver2" {
		t.Errorf("job 2 = %v", jobs[1])
	}

	id1 := protos.MustUniqueID(j1.GetJobId())
	if err := c.FinishJob(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events); !ev.GetFinished() || ev.GetEndTimeUnixMs() == 0 {
		t.Fatalf("finish event %v", ev)
	}
	if err := c.FinishJob(ctx, id1); err != nil {
		t.Errorf("finishing twice: %v", err)
	}
	jobs, _ = c.ListJobs(ctx)
	if !jobs[0].GetFinished() || jobs[1].GetFinished() {
		t.Errorf("finished flags: %v %v", jobs[0].GetFinished(), jobs[1].GetFinished())
	}
	if err := c.FinishJob(ctx, protos.NewUniqueID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("finish unknown job: %v, want ErrNotFound", err)
	}
	if err := c.RegisterJob(ctx, &protos.JobInfo{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("register job without id: %v, want ErrInvalid", err)
	}
}

func TestFunctionsRoundTrip(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)

	job := protos.NewUniqueID()
	table := &protos.FunctionTable{
		JobId:  job.Bytes(),
		Digest: "sha256:abc",
		Functions: []*protos.FunctionDescriptor{
			{Name: "main.Add", Signature: "func(context.Context, int, int) (int, error)"},
			{Name: "main.Hello", Signature: "func(context.Context) (string, error)"},
		},
	}
	if err := c.RegisterFunctions(ctx, table); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetFunctions(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, table) {
		t.Fatalf("GetFunctions = %v, want %v", got, table)
	}
	// A new registration replaces the table.
	table2 := proto.CloneOf(table)
	table2.Digest = "sha256:def"
	table2.Functions = table2.Functions[:1]
	if err := c.RegisterFunctions(ctx, table2); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetFunctions(ctx, job); !proto.Equal(got, table2) {
		t.Fatalf("after re-register: %v", got)
	}

	if _, err := c.GetFunctions(ctx, protos.NewUniqueID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown job: %v, want ErrNotFound", err)
	}
	if err := c.RegisterFunctions(ctx, &protos.FunctionTable{JobId: []byte("short")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad job id: %v, want ErrInvalid", err)
	}
}

func TestKV(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)

	put := func(ns, key, val string, overwrite bool) bool {
		t.Helper()
		added, err := c.KVPut(ctx, ns, key, []byte(val), overwrite)
		if err != nil {
			t.Fatalf("KVPut(%q, %q): %v", ns, key, err)
		}
		return added
	}
	get := func(ns, key string) (string, bool) {
		t.Helper()
		v, ok, err := c.KVGet(ctx, ns, key)
		if err != nil {
			t.Fatalf("KVGet(%q, %q): %v", ns, key, err)
		}
		return string(v), ok
	}

	// Overwrite semantics (Ray's internal_kv_put).
	if !put("ns1", "k", "v1", false) {
		t.Error("first put: added = false")
	}
	if put("ns1", "k", "v2", false) {
		t.Error("put without overwrite on existing key: added = true")
	}
	if v, _ := get("ns1", "k"); v != "v1" {
		t.Errorf("value replaced without overwrite: %q", v)
	}
	if put("ns1", "k", "v3", true) {
		t.Error("overwrite of existing key: added = true")
	}
	if v, _ := get("ns1", "k"); v != "v3" {
		t.Errorf("after overwrite: %q", v)
	}

	// Namespaces are separate, including the empty one.
	if !put("ns2", "k", "other", false) || !put("", "k", "root", false) {
		t.Error("same key in another namespace not added")
	}
	if v, _ := get("ns1", "k"); v != "v3" {
		t.Errorf("ns1 value disturbed: %q", v)
	}
	if v, _ := get("", "k"); v != "root" {
		t.Errorf("empty namespace: %q", v)
	}
	if _, ok := get("ns3", "k"); ok {
		t.Error("found key in unused namespace")
	}

	// Keys NATS could never carry as-is, and an empty value.
	odd := []string{"a.b", "with space", "ünï/cødé", "*", ">", "..", "x=y"}
	for _, k := range odd {
		put("ns1", k, "v:"+k, false)
	}
	put("ns1", "empty", "", false)
	for _, k := range odd {
		if v, ok := get("ns1", k); !ok || v != "v:"+k {
			t.Errorf("key %q: %q %v", k, v, ok)
		}
	}
	if v, ok := get("ns1", "empty"); !ok || v != "" {
		t.Errorf("empty value: %q, found=%v", v, ok)
	}

	// Prefix listing.
	for _, k := range []string{"job:1", "job:2", "jobx", "task:1"} {
		put("p", k, "x", false)
	}
	keys, err := c.KVKeys(ctx, "p", "job:")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "job:1,job:2" {
		t.Errorf("KVKeys(job:) = %v", keys)
	}
	if keys, _ := c.KVKeys(ctx, "p", ""); len(keys) != 4 {
		t.Errorf("KVKeys(all) = %v", keys)
	}

	// Delete.
	if ok, err := c.KVDelete(ctx, "p", "job:1"); err != nil || !ok {
		t.Errorf("delete existing: %v %v", ok, err)
	}
	if ok, err := c.KVDelete(ctx, "p", "job:1"); err != nil || ok {
		t.Errorf("delete missing: %v %v", ok, err)
	}
	if _, ok := get("p", "job:1"); ok {
		t.Error("deleted key still found")
	}

	if _, err := c.KVPut(ctx, "ns", "", []byte("x"), true); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty key: %v, want ErrInvalid", err)
	}
}

func TestClusterInfo(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{SessionDir: "/tmp/goray/session_test"})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	if err := c.RegisterNode(ctx, newNode("n")); err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterJob(ctx, newJob("d")); err != nil {
		t.Fatal(err)
	}
	info, err := c.ClusterInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.GetNodes()) != 1 || len(info.GetJobs()) != 1 || info.GetSessionDir() != "/tmp/goray/session_test" {
		t.Fatalf("ClusterInfo = %v", info)
	}
}

// TestRecovery restarts the GCS on the same store and expects every table
// back.
func TestRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := runServer(t, Options{StoreDir: dir})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)

	alive, gone := newNode("alive"), newNode("gone")
	job, done := newJob("d1"), newJob("d2")
	table := &protos.FunctionTable{JobId: job.GetJobId(), Digest: "d", Functions: []*protos.FunctionDescriptor{{Name: "f"}}}
	must(t, c.RegisterNode(ctx, alive))
	must(t, c.RegisterNode(ctx, gone))
	must(t, c.UnregisterNode(ctx, protos.MustUniqueID(gone.GetNodeId())))
	must(t, c.RegisterJob(ctx, job))
	must(t, c.RegisterJob(ctx, done))
	must(t, c.FinishJob(ctx, protos.MustUniqueID(done.GetJobId())))
	must(t, c.RegisterFunctions(ctx, table))
	_, err := c.KVPut(ctx, "ns", "a.key", []byte("value"), false)
	must(t, err)
	_, err = c.KVPut(ctx, "", "deleted", []byte("x"), false)
	must(t, err)
	_, err = c.KVDelete(ctx, "", "deleted")
	must(t, err)

	srv.Shutdown()
	srv2 := runServer(t, Options{StoreDir: dir})
	c2 := dial(t, srv2.ClientURL())

	nodes, err := c2.ListNodes(ctx)
	must(t, err)
	if len(nodes) != 2 || stateOf(nodes, alive) != protos.NodeInfo_ALIVE || stateOf(nodes, gone) != protos.NodeInfo_DEAD {
		t.Errorf("recovered nodes = %v", nodes)
	}
	jobs, err := c2.ListJobs(ctx)
	must(t, err)
	if len(jobs) != 2 {
		t.Fatalf("recovered jobs = %v", jobs)
	}
	for _, j := range jobs {
		if want := bytes.Equal(j.GetJobId(), done.GetJobId()); j.GetFinished() != want {
			t.Errorf("job %x finished=%v, want %v", j.GetJobId(), j.GetFinished(), want)
		}
	}
	got, err := c2.GetFunctions(ctx, protos.MustUniqueID(job.GetJobId()))
	must(t, err)
	if !proto.Equal(got, table) {
		t.Errorf("recovered table = %v", got)
	}
	if v, ok, err := c2.KVGet(ctx, "ns", "a.key"); err != nil || !ok || string(v) != "value" {
		t.Errorf("recovered kv = %q %v %v", v, ok, err)
	}
	if _, ok, _ := c2.KVGet(ctx, "", "deleted"); ok {
		t.Error("deleted key came back")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMalformedRequests sends bytes that are not the expected protobuf to
// every request subject: each must answer with an invalid-request error
// naming the subject and the message type, and the server must keep going.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	garbage := []byte{0xff, 0xff, 0xff, 0xff}

	replies := map[string]replyWithError{
		SubjectNodeRegister:   &protos.RegisterNodeReply{},
		SubjectNodeUnregister: &protos.UnregisterNodeReply{},
		SubjectNodeList:       &protos.ListNodesReply{},
		SubjectJobRegister:    &protos.RegisterJobReply{},
		SubjectJobFinish:      &protos.FinishJobReply{},
		SubjectJobList:        &protos.ListJobsReply{},
		SubjectFuncRegister:   &protos.RegisterFunctionsReply{},
		SubjectFuncGet:        &protos.GetFunctionsReply{},
		SubjectKVPut:          &protos.KVPutReply{},
		SubjectKVGet:          &protos.KVGetReply{},
		SubjectKVDelete:       &protos.KVDeleteReply{},
		SubjectKVKeys:         &protos.KVKeysReply{},
		SubjectClusterInfo:    &protos.ClusterInfoReply{},
	}
	for subject, rep := range replies {
		m, err := c.NATS().RequestWithContext(ctx, subject, garbage)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if err := proto.Unmarshal(m.Data, rep); err != nil {
			t.Fatalf("%s: reply undecodable: %v", subject, err)
		}
		e := rep.GetError()
		if e.GetCode() != CodeInvalid || !strings.Contains(e.GetMessage(), subject) || !strings.Contains(e.GetMessage(), "cannot decode request as goray.v1.") {
			t.Errorf("%s: error %v", subject, e)
		}
		err = replyError(subject, e)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v does not wrap ErrInvalid", subject, err)
		}
	}

	// Shutdown has no error field: the refusal comes in headers, and the
	// server stays up.
	m, err := c.NATS().RequestWithContext(ctx, SubjectClusterShutdown, garbage)
	must(t, err)
	err = shutdownReplyError(m)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "ShutdownRequest") {
		t.Errorf("malformed shutdown: %v", err)
	}
	// Garbage node reports are dropped.
	must(t, c.NATS().Publish(NodeReportSubject(protos.NewUniqueID()), garbage))

	select {
	case <-srv.Done():
		t.Fatal("server shut down on a malformed request")
	default:
	}
	if _, err := c.ListNodes(ctx); err != nil {
		t.Fatalf("server broken after malformed requests: %v", err)
	}
}

func TestShutdownRequestOverNATS(t *testing.T) {
	t.Parallel()
	called := make(chan struct{})
	srv := runServer(t, Options{OnShutdownRequest: func() { close(called) }})
	c := dial(t, srv.ClientURL())
	if err := c.RequestShutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("OnShutdownRequest not called")
	}
	select {
	case <-srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after a shutdown request")
	}
}

// TestShutdown is not parallel: it checks that no goroutine of the server
// outlives Shutdown, which other tests' servers would confuse.
func TestShutdown(t *testing.T) {
	srv := runServer(t, Options{NodeTimeout: 50 * time.Millisecond})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	must(t, c.RegisterNode(ctx, newNode("n")))
	leftovers := []string{
		"nats-server/v2/server.",
		"goray/gcs.(*nodeManager)",
		"goray/gcs.(*Server)",
		"protoactor-go/actor.(*defaultMailbox)",
		"nats.go.(*Conn)",
	}
	// The check below must be able to see a running server's goroutines.
	if len(goroutinesMatching(leftovers[:2]...)) == 0 {
		t.Fatal("no server goroutines found while running: stack patterns are stale")
	}

	t0 := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); srv.Shutdown() }()
	}
	wg.Wait()
	t.Logf("shutdown took %s", time.Since(t0))
	srv.Shutdown()
	select {
	case <-srv.Done():
	default:
		t.Fatal("Done not closed after Shutdown returned")
	}
	if err := srv.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown: %v, want ErrClosed", err)
	}
	// The client is reconnecting now, so the request waits out its
	// context rather than failing at once.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.ListNodes(short); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("request after Shutdown: %v, want ErrUnavailable", err)
	}
	t1 := time.Now()
	c.Close()
	t.Logf("client close took %s", time.Since(t1))

	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if gs := goroutinesMatching(leftovers...); len(gs) > 0 {
			return fmt.Errorf("%d goroutines left, first:\n%s", len(gs), gs[0])
		}
		return nil
	})
}

func TestShutdownBeforeStart(t *testing.T) {
	t.Parallel()
	srv, err := NewServer(Options{StoreDir: t.TempDir(), Credentials: testCreds})
	must(t, err)
	srv.Shutdown()
	<-srv.Done()
	if err := srv.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown: %v", err)
	}
}

func TestNewServerValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewServer(Options{Credentials: testCreds}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no StoreDir: %v, want ErrInvalid", err)
	}
	if _, err := NewServer(Options{StoreDir: "x"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Credentials") {
		t.Errorf("no Credentials: %v, want ErrInvalid naming Credentials", err)
	}
	if _, err := NewServer(Options{StoreDir: "x", Port: 70000, Credentials: testCreds}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad port: %v, want ErrInvalid", err)
	}
}

// TestExternalNATS runs the GCS against a NATS server it does not own, and
// checks that after Shutdown nothing answers on its subjects any more while
// the NATS server lives on.
func TestExternalNATS(t *testing.T) {
	t.Parallel()
	ns, err := StartNATS(NATSOptions{StoreDir: t.TempDir(), Logger: testLogger(t)})
	must(t, err)
	t.Cleanup(ns.Shutdown)

	srv := runServer(t, Options{NATSURL: ns.ClientURL()})
	if srv.ClientURL() != ns.ClientURL() {
		t.Errorf("ClientURL = %q, want the external %q", srv.ClientURL(), ns.ClientURL())
	}
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	_, err = c.KVPut(ctx, "ns", "k", []byte("v"), false)
	must(t, err)

	srv.Shutdown()
	_, err = c.ListNodes(ctx)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request after GCS shutdown: %v, want no responders", err)
	}

	// The state lives in the external server's JetStream.
	srv2 := runServer(t, Options{NATSURL: ns.ClientURL()})
	c2 := dial(t, srv2.ClientURL())
	if v, ok, err := c2.KVGet(ctx, "ns", "k"); err != nil || !ok || string(v) != "v" {
		t.Errorf("KV after GCS restart on external NATS: %q %v %v", v, ok, err)
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	// A NATS server without a GCS: no responders.
	ns, err := StartNATS(NATSOptions{StoreDir: t.TempDir(), Logger: testLogger(t)})
	must(t, err)
	t.Cleanup(ns.Shutdown)
	c := dial(t, ns.ClientURL())
	if _, err := c.ListJobs(ctxT(t)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no GCS: %v, want ErrUnavailable", err)
	}
	if err := c.ReportNode(&protos.NodeInfo{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("report without id: %v, want ErrInvalid", err)
	}
	c.Close()
	c.Close()
	if _, err := c.ListJobs(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("closed client: %v, want ErrClosed", err)
	}
}
