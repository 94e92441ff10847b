package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"google.golang.org/protobuf/proto"
)

// --- a scripted placer: the test answers each lease and creation ---

type fakePlacer struct {
	leases  chan *fakeLease
	creates chan *fakeCreate
	closed  chan struct{}
	once    sync.Once

	mu       sync.Mutex
	kills    []*protos.KillActorRequest
	returned [][]byte
	startedL [][]byte
	// keepAliveOnKill makes KILL_ACTOR leave the worker running.
	keepAliveOnKill bool
	// attached records ATTACH_ACTOR requests; attachErr fails them (the
	// worker is gone).
	attached  []*protos.AttachActorRequest
	attachErr error

	// packed records the packed hosts' traffic (actors_packed_test.go).
	packed fakePacked
}

type fakeLease struct {
	node   *protos.NodeInfo
	req    *protos.RequestWorkerLeaseRequest
	answer chan leaseAnswer
}

type leaseAnswer struct {
	rep *protos.RequestWorkerLeaseReply
	err error
}

type fakeCreate struct {
	worker *protos.Address
	req    *protos.CreateActorRequest
	exited func(string)
	answer chan createAnswer
}

type createAnswer struct {
	conn actorConn
	rep  *protos.CreateActorReply
	err  error
}

type fakeConn struct {
	done chan struct{}
	once sync.Once
}

func newFakeConn() *fakeConn              { return &fakeConn{done: make(chan struct{})} }
func (c *fakeConn) Done() <-chan struct{} { return c.done }
func (c *fakeConn) Close() error          { c.once.Do(func() { close(c.done) }); return nil }

func newFakePlacer() *fakePlacer {
	return &fakePlacer{leases: make(chan *fakeLease, 64), creates: make(chan *fakeCreate, 64), closed: make(chan struct{})}
}

func (p *fakePlacer) lease(ctx context.Context, node *protos.NodeInfo, req *protos.RequestWorkerLeaseRequest) (*protos.RequestWorkerLeaseReply, error) {
	l := &fakeLease{node: node, req: req, answer: make(chan leaseAnswer, 1)}
	p.leases <- l
	select {
	case a := <-l.answer:
		return a.rep, a.err
	case <-p.closed:
		return nil, wire.ErrClosed
	}
}

func (p *fakePlacer) create(ctx context.Context, worker *protos.Address, req *protos.CreateActorRequest, exited func(string)) (actorConn, *protos.CreateActorReply, error) {
	c := &fakeCreate{worker: worker, req: req, exited: exited, answer: make(chan createAnswer, 1)}
	p.creates <- c
	select {
	case a := <-c.answer:
		return a.conn, a.rep, a.err
	case <-p.closed:
		return nil, nil, wire.ErrClosed
	}
}

func (p *fakePlacer) attach(ctx context.Context, node *protos.NodeInfo, worker *protos.Address, req *protos.AttachActorRequest, exited func(string)) (actorConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attached = append(p.attached, req)
	if p.attachErr != nil {
		return nil, p.attachErr
	}
	return newFakeConn(), nil
}

func (p *fakePlacer) started(ctx context.Context, node *protos.NodeInfo, lease []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startedL = append(p.startedL, lease)
	return nil
}

func (p *fakePlacer) kill(ctx context.Context, conn actorConn, req *protos.KillActorRequest) error {
	p.mu.Lock()
	p.kills = append(p.kills, req)
	keep := p.keepAliveOnKill
	p.mu.Unlock()
	if !keep {
		_ = conn.Close() // the worker answers, then exits
	}
	return nil
}

func (p *fakePlacer) returnLease(ctx context.Context, node *protos.NodeInfo, lease []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.returned = append(p.returned, lease)
	return nil
}

func (p *fakePlacer) close() { p.once.Do(func() { close(p.closed) }) }

func (p *fakePlacer) nextLease(t *testing.T) *fakeLease {
	t.Helper()
	select {
	case l := <-p.leases:
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no lease request within 5s")
		return nil
	}
}

func (p *fakePlacer) nextCreate(t *testing.T) *fakeCreate {
	t.Helper()
	select {
	case c := <-p.creates:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no CREATE_ACTOR within 5s")
		return nil
	}
}

func (p *fakePlacer) noLease(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case l := <-p.leases:
		t.Fatalf("unexpected lease request on node %x", l.node.GetNodeId())
	case <-time.After(d):
	}
}

func (p *fakePlacer) noCreate(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.creates:
		t.Fatal("unexpected CREATE_ACTOR")
	case <-time.After(d):
	}
}

func (p *fakePlacer) waitReturned(t *testing.T, lease []byte) {
	t.Helper()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.returned {
			if bytes.Equal(l, lease) {
				return nil
			}
		}
		return fmt.Errorf("lease %x not returned (returned: %x)", lease, p.returned)
	})
}

func (p *fakePlacer) killRequests() []*protos.KillActorRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*protos.KillActorRequest(nil), p.kills...)
}

func (p *fakePlacer) startedLeases() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.startedL...)
}

// grant answers a lease with a worker of pid; it returns the lease id.
func (l *fakeLease) grant(pid int32) []byte {
	id := protos.NewUniqueID().Bytes()
	l.answer <- leaseAnswer{rep: &protos.RequestWorkerLeaseReply{
		LeaseId:  id,
		Worker:   &protos.Address{WorkerId: protos.NewUniqueID().Bytes(), NodeId: l.node.GetNodeId(), Endpoint: fmt.Sprintf("unix:/fake/worker-%d.sock", pid), Pid: pid},
		Assigned: l.req.GetResources(),
	}}
	return id
}

func (l *fakeLease) fail(err error) { l.answer <- leaseAnswer{err: err} }

// ok answers CREATE_ACTOR with success; closing the returned conn is the
// worker dying.
func (c *fakeCreate) ok() *fakeConn {
	conn := newFakeConn()
	c.answer <- createAnswer{conn: conn, rep: &protos.CreateActorReply{}}
	return conn
}

// --- test setup ---

type actorEnv struct {
	srv *Server
	c   *Client
	p   *fakePlacer
	ctx context.Context
}

func newActorEnv(t *testing.T, opts Options) *actorEnv {
	t.Helper()
	return newActorEnvWith(t, opts, newFakePlacer())
}

// newActorEnvWith is newActorEnv with a placer set up by the test.
func newActorEnvWith(t *testing.T, opts Options, p *fakePlacer) *actorEnv {
	t.Helper()
	opts.placer = p
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = time.Minute
	}
	srv := runServer(t, opts)
	return &actorEnv{srv: srv, c: dial(t, srv.ClientURL()), p: p, ctx: ctxT(t)}
}

// addNode registers an ALIVE node with cpus CPUs, all available.
func (e *actorEnv) addNode(t *testing.T, host string, cpus float64) *protos.NodeInfo {
	t.Helper()
	n := newNode(host)
	n.Total = &protos.Resources{Amounts: map[string]float64{"CPU": cpus}}
	n.Available = &protos.Resources{Amounts: map[string]float64{"CPU": cpus}}
	must(t, e.c.RegisterNode(e.ctx, n))
	return n
}

func actorSpec(job protos.JobID, class string, opts *protos.ActorOptions) *protos.ActorSpec {
	return &protos.ActorSpec{ActorId: protos.NewUniqueID().Bytes(), JobId: job.Bytes(), ClassName: class, Options: opts}
}

// watch collects the actor's events.
func (e *actorEnv) watch(t *testing.T, spec *protos.ActorSpec) <-chan *protos.ActorInfo {
	t.Helper()
	ch := make(chan *protos.ActorInfo, 64)
	unsub, err := e.c.WatchActor(protos.MustUniqueID(spec.GetActorId()), func(info *protos.ActorInfo) { ch <- info })
	must(t, err)
	t.Cleanup(unsub)
	return ch
}

func expectState(t *testing.T, ch <-chan *protos.ActorInfo, want protos.ActorState) *protos.ActorInfo {
	t.Helper()
	info := nextEvent(t, ch)
	if info.GetState() != want {
		t.Fatalf("event: state %v (cause %q), want %v", info.GetState(), info.GetDeathCause(), want)
	}
	return info
}

func noEvent(t *testing.T, ch <-chan *protos.ActorInfo, d time.Duration) {
	t.Helper()
	select {
	case info := <-ch:
		t.Fatalf("unexpected event: state %v cause %q", info.GetState(), info.GetDeathCause())
	case <-time.After(d):
	}
}

// startActor registers spec and drives it to ALIVE on a worker of pid.
func (e *actorEnv) startActor(t *testing.T, spec *protos.ActorSpec, pid int32) (events <-chan *protos.ActorInfo, lease []byte, conn *fakeConn, create *fakeCreate) {
	t.Helper()
	events = e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	lease = e.p.nextLease(t).grant(pid)
	create = e.p.nextCreate(t)
	conn = create.ok()
	info := expectState(t, events, protos.ActorState_ALIVE)
	if info.GetAddress().GetPid() != pid || !bytes.Equal(info.GetLeaseId(), lease) {
		t.Fatalf("ALIVE record: %v", info)
	}
	return events, lease, conn, create
}

// --- pure functions ---

func TestCheckRegisterActor(t *testing.T) {
	t.Parallel()
	job := protos.NewUniqueID()
	ok := func(mod func(s *protos.ActorSpec)) *protos.ActorSpec {
		s := actorSpec(job, "Counter", &protos.ActorOptions{})
		mod(s)
		return s
	}
	for _, tc := range []struct {
		name string
		spec *protos.ActorSpec
		want string // "" = valid
	}{
		{"minimal", ok(func(s *protos.ActorSpec) { s.Options = nil }), ""},
		{"full", ok(func(s *protos.ActorSpec) {
			s.Options = &protos.ActorOptions{Name: "a", Namespace: "n", GetIfExists: true, MaxRestarts: -1, MaxTaskRetries: -1, MaxConcurrency: 4, MaxPendingCalls: 10,
				PlacementResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1, "GPU": 0.5}},
				ConcurrencyGroups:  []*protos.ConcurrencyGroup{{Name: "io", MaxConcurrency: 2, Methods: []string{"Read"}}, {Name: "cpu", MaxConcurrency: 1, Methods: []string{"Sum"}}}}
		}), ""},
		{"nil spec", nil, "spec: required"},
		{"no actor id", ok(func(s *protos.ActorSpec) { s.ActorId = nil }), "spec.actor_id: id has 0 bytes"},
		{"zero actor id", ok(func(s *protos.ActorSpec) { s.ActorId = make([]byte, 16) }), "spec.actor_id: id is all zero"},
		{"short job id", ok(func(s *protos.ActorSpec) { s.JobId = []byte{1} }), "spec.job_id"},
		{"no class", ok(func(s *protos.ActorSpec) { s.ClassName = "" }), "spec.class_name: required"},
		{"max_restarts", ok(func(s *protos.ActorSpec) { s.Options.MaxRestarts = -2 }), "max_restarts"},
		{"max_task_retries", ok(func(s *protos.ActorSpec) { s.Options.MaxTaskRetries = -5 }), "max_task_retries"},
		{"max_concurrency", ok(func(s *protos.ActorSpec) { s.Options.MaxConcurrency = -1 }), "max_concurrency"},
		{"max_pending_calls", ok(func(s *protos.ActorSpec) { s.Options.MaxPendingCalls = -1 }), "max_pending_calls"},
		{"get_if_exists without name", ok(func(s *protos.ActorSpec) { s.Options.GetIfExists = true }), "get_if_exists: needs a name"},
		{"negative resource", ok(func(s *protos.ActorSpec) {
			s.Options.RunningResources = &protos.Resources{Amounts: map[string]float64{"CPU": -1}}
		}), "spec.options.running_resources"},
		{"unnamed group", ok(func(s *protos.ActorSpec) {
			s.Options.ConcurrencyGroups = []*protos.ConcurrencyGroup{{MaxConcurrency: 1}}
		}), "empty name"},
		{"duplicate group", ok(func(s *protos.ActorSpec) {
			s.Options.ConcurrencyGroups = []*protos.ConcurrencyGroup{{Name: "g", MaxConcurrency: 1}, {Name: "g", MaxConcurrency: 2}}
		}), `"g" defined twice`},
		{"group max", ok(func(s *protos.ActorSpec) {
			s.Options.ConcurrencyGroups = []*protos.ConcurrencyGroup{{Name: "g", MaxConcurrency: 0}}
		}), "max_concurrency must be >= 1"},
		{"method in two groups", ok(func(s *protos.ActorSpec) {
			s.Options.ConcurrencyGroups = []*protos.ConcurrencyGroup{{Name: "a", MaxConcurrency: 1, Methods: []string{"M"}}, {Name: "b", MaxConcurrency: 1, Methods: []string{"M"}}}
		}), `method "M"`},
		{"unknown strategy", ok(func(s *protos.ActorSpec) {
			s.Options.Strategy = &protos.SchedulingStrategy{Kind: 7}
		}), "spec.options.strategy.kind: unknown value 7"},
		{"affinity without node", ok(func(s *protos.ActorSpec) {
			s.Options.Strategy = &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY}
		}), "spec.options.strategy.node_id"},
		{"group without id", ok(func(s *protos.ActorSpec) {
			s.Options.Strategy = &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_PLACEMENT_GROUP, BundleIndex: -1}
		}), "spec.options.strategy.placement_group_id"},
		{"bundle index", ok(func(s *protos.ActorSpec) {
			s.Options.Strategy = &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_PLACEMENT_GROUP, PlacementGroupId: job.Bytes(), BundleIndex: -2}
		}), "spec.options.strategy.bundle_index"},
		{"selector without values", ok(func(s *protos.ActorSpec) {
			s.Options.Strategy = &protos.SchedulingStrategy{Labels: map[string]*protos.LabelValues{"zone": {}}}
		}), "spec.options.strategy.labels"},
		{"NaN resource", ok(func(s *protos.ActorSpec) {
			s.Options.PlacementResources = &protos.Resources{Amounts: map[string]float64{"CPU": math.NaN()}}
		}), "spec.options.placement_resources"},
		{"huge resource", ok(func(s *protos.ActorSpec) {
			s.Options.PlacementResources = &protos.Resources{Amounts: map[string]float64{"CPU": 1e300}}
		}), "spec.options.placement_resources"},
		{"long name", ok(func(s *protos.ActorSpec) { s.Options.Name = strings.Repeat("n", maxNameBytes+1) }), "spec.options.name: 1025 bytes"},
		{"unknown encoding", ok(func(s *protos.ActorSpec) {
			s.Args = []*protos.TaskArg{{Value: &protos.ObjectData{Encoding: 99}}}
		}), "spec.args: unknown value 99"},
		{"bad owner endpoint", ok(func(s *protos.ActorSpec) { s.Owner = &protos.Address{Endpoint: "carrier-pigeon"} }), "spec.owner.endpoint"},
		{"short owner node", ok(func(s *protos.ActorSpec) { s.Owner = &protos.Address{NodeId: []byte{1}} }), "spec.owner.node_id"},
	} {
		err := checkRegisterActor(&protos.RegisterActorRequest{Spec: tc.spec})
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

func TestPickNode(t *testing.T) {
	t.Parallel()
	node := func(b byte, state protos.NodeInfo_State, total, avail float64) *protos.NodeInfo {
		id := make([]byte, 16)
		id[15] = b
		return &protos.NodeInfo{NodeId: id, State: state, RayletEndpoint: fmt.Sprintf("unix:/r%d", b),
			Total:     &protos.Resources{Amounts: map[string]float64{"CPU": total}},
			Available: &protos.Resources{Amounts: map[string]float64{"CPU": avail}}}
	}
	alive, dead := protos.NodeInfo_ALIVE, protos.NodeInfo_DEAD
	n1, n2, n3 := node(1, alive, 4, 1), node(2, alive, 8, 6), node(3, alive, 8, 6)
	noEndpoint := node(4, alive, 16, 16)
	noEndpoint.RayletEndpoint = ""
	gpu := node(5, alive, 2, 2)
	gpu.Total.Amounts["GPU"], gpu.Available.Amounts["GPU"] = 1, 1
	busyGPU := node(6, alive, 2, 2)
	busyGPU.Total.Amounts["GPU"] = 1
	cpu1 := map[string]float64{"CPU": 1}
	cpu2 := map[string]float64{"CPU": 2}
	for _, tc := range []struct {
		name     string
		nodes    []*protos.NodeInfo
		demand   map[string]float64
		owner    *protos.NodeInfo
		excluded []*protos.NodeInfo
		want     *protos.NodeInfo
	}{
		{name: "none", nodes: nil, demand: cpu1, want: nil},
		{name: "only dead", nodes: []*protos.NodeInfo{node(1, dead, 4, 4)}, demand: cpu1, want: nil},
		{name: "no endpoint", nodes: []*protos.NodeInfo{noEndpoint}, demand: cpu1, want: nil},
		{name: "most available CPU", nodes: []*protos.NodeInfo{n1, n2}, demand: cpu1, want: n2},
		{name: "tie goes to lowest id", nodes: []*protos.NodeInfo{n3, n2}, demand: cpu1, want: n2},
		{name: "owner's node when it fits", nodes: []*protos.NodeInfo{n1, n2}, demand: cpu1, owner: n1, want: n1},
		{name: "fits beats owner", nodes: []*protos.NodeInfo{n1, n2}, demand: cpu2, owner: n1, want: n2},
		{name: "excluded", nodes: []*protos.NodeInfo{n1, n2}, demand: cpu1, excluded: []*protos.NodeInfo{n2}, want: n1},
		{name: "all excluded", nodes: []*protos.NodeInfo{n1}, demand: cpu1, excluded: []*protos.NodeInfo{n1}, want: nil},
		{name: "custom resource", nodes: []*protos.NodeInfo{n2, gpu}, demand: map[string]float64{"GPU": 1}, want: gpu},
		{name: "feasible but busy beats infeasible", nodes: []*protos.NodeInfo{n2, busyGPU}, demand: map[string]float64{"GPU": 1}, want: busyGPU},
		{name: "infeasible everywhere still picks a node", nodes: []*protos.NodeInfo{n1, n2}, demand: map[string]float64{"TPU": 1}, want: n2},
		{name: "zero demand", nodes: []*protos.NodeInfo{n1, n2}, demand: nil, want: n2},
	} {
		excluded := map[protos.NodeID]bool{}
		for _, n := range tc.excluded {
			excluded[protos.MustUniqueID(n.GetNodeId())] = true
		}
		var owner []byte
		if tc.owner != nil {
			owner = tc.owner.GetNodeId()
		}
		got := pickNode(tc.nodes, tc.demand, owner, excluded)
		if got != tc.want {
			t.Errorf("%s: picked %x, want %x", tc.name, got.GetNodeId(), tc.want.GetNodeId())
		}
	}
}

// --- requests over NATS (no node: actors stay PENDING_CREATION) ---

func TestActorRegisterGetList(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	job, other := protos.NewUniqueID(), protos.NewUniqueID()

	anon := actorSpec(job, "Worker", nil)
	info, err := e.c.RegisterActor(e.ctx, anon)
	must(t, err)
	if info.GetState() != protos.ActorState_PENDING_CREATION || !bytes.Equal(info.GetActorId(), anon.GetActorId()) || !proto.Equal(info.GetSpec(), anon) {
		t.Fatalf("registered: %v", info)
	}
	// A retried registration answers the same actor.
	again, err := e.c.RegisterActor(e.ctx, anon)
	must(t, err)
	if !proto.Equal(again, info) {
		t.Errorf("re-registration: %v", again)
	}

	named := actorSpec(job, "Counter", &protos.ActorOptions{Name: "counter", Namespace: "ns1"})
	_, err = e.c.RegisterActor(e.ctx, named)
	must(t, err)
	// The same name in another namespace is another actor.
	elsewhere := actorSpec(other, "Counter", &protos.ActorOptions{Name: "counter", Namespace: "ns2"})
	_, err = e.c.RegisterActor(e.ctx, elsewhere)
	must(t, err)

	dup := actorSpec(job, "Counter", &protos.ActorOptions{Name: "counter", Namespace: "ns1"})
	_, err = e.c.RegisterActor(e.ctx, dup)
	if !errors.Is(err, ErrAlreadyExists) || !strings.Contains(err.Error(), `"counter"`) || !strings.Contains(err.Error(), `"ns1"`) {
		t.Errorf("duplicate name: %v, want ErrAlreadyExists naming the name and namespace", err)
	}
	dup.Options.GetIfExists = true
	got, err := e.c.RegisterActor(e.ctx, dup)
	must(t, err)
	if !bytes.Equal(got.GetActorId(), named.GetActorId()) {
		t.Errorf("get_if_exists returned %x, want the existing %x", got.GetActorId(), named.GetActorId())
	}
	if _, err := e.c.GetActor(e.ctx, protos.MustUniqueID(dup.GetActorId())); !errors.Is(err, ErrNotFound) {
		t.Errorf("get_if_exists registered a second actor: %v", err)
	}

	got, err = e.c.GetActor(e.ctx, protos.MustUniqueID(named.GetActorId()))
	must(t, err)
	if !proto.Equal(got.GetSpec(), named) {
		t.Errorf("GetActor: %v", got)
	}
	got, err = e.c.GetNamedActor(e.ctx, "counter", "ns2")
	must(t, err)
	if !bytes.Equal(got.GetActorId(), elsewhere.GetActorId()) {
		t.Errorf("GetNamedActor(counter, ns2) = %x", got.GetActorId())
	}
	if _, err := e.c.GetNamedActor(e.ctx, "counter", "ns3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown name: %v", err)
	}
	if _, err := e.c.GetActor(e.ctx, protos.NewUniqueID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := e.c.GetNamedActor(e.ctx, "", "ns1"); !errors.Is(err, ErrInvalid) {
		t.Errorf("no id, no name: %v", err)
	}

	all, err := e.c.ListActors(e.ctx, protos.JobID{})
	must(t, err)
	if len(all) != 3 {
		t.Errorf("ListActors(all) = %d actors", len(all))
	}
	mine, err := e.c.ListActors(e.ctx, job)
	must(t, err)
	if len(mine) != 2 {
		t.Errorf("ListActors(job) = %d actors", len(mine))
	}
	for _, a := range mine {
		if !bytes.Equal(a.GetSpec().GetJobId(), job.Bytes()) {
			t.Errorf("ListActors(job) returned an actor of job %x", a.GetSpec().GetJobId())
		}
	}

	bad := actorSpec(job, "Counter", &protos.ActorOptions{MaxRestarts: -3})
	if _, err := e.c.RegisterActor(e.ctx, bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "max_restarts") {
		t.Errorf("invalid spec: %v", err)
	}
	if _, err := e.c.GetActor(e.ctx, protos.MustUniqueID(bad.GetActorId())); !errors.Is(err, ErrNotFound) {
		t.Errorf("an invalid spec was recorded: %v", err)
	}
}

func TestActorKillPending(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	job := protos.NewUniqueID()

	spec := actorSpec(job, "Counter", &protos.ActorOptions{Name: "c", MaxRestarts: 5})
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	id := protos.MustUniqueID(spec.GetActorId())

	// kill(no_restart=False) counts as a restart.
	must(t, e.c.KillActor(e.ctx, id, false))
	info := expectState(t, events, protos.ActorState_RESTARTING)
	if info.GetNumRestarts() != 1 || info.GetDeathCause() != deathKilledRestart {
		t.Errorf("after kill(no_restart=False): %v", info)
	}

	must(t, e.c.KillActor(e.ctx, id, true))
	info = expectState(t, events, protos.ActorState_DEAD)
	if info.GetDeathCause() != deathKilled || info.GetEndTimeUnixMs() == 0 {
		t.Errorf("after kill(no_restart=True): %v", info)
	}
	got, err := e.c.GetActor(e.ctx, id)
	must(t, err)
	if got.GetState() != protos.ActorState_DEAD {
		t.Errorf("GetActor after kill: %v", got.GetState())
	}
	// Killing a dead actor is a no-op; an unknown one is not found.
	must(t, e.c.KillActor(e.ctx, id, true))
	noEvent(t, events, 50*time.Millisecond)
	if err := e.c.KillActor(e.ctx, protos.NewUniqueID(), true); !errors.Is(err, ErrNotFound) {
		t.Errorf("kill unknown: %v", err)
	}

	// The name is free again.
	if _, err := e.c.GetNamedActor(e.ctx, "c", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("dead actor still found by name: %v", err)
	}
	next := actorSpec(job, "Counter", &protos.ActorOptions{Name: "c"})
	_, err = e.c.RegisterActor(e.ctx, next)
	must(t, err)
	got, err = e.c.GetNamedActor(e.ctx, "c", "")
	must(t, err)
	if !bytes.Equal(got.GetActorId(), next.GetActorId()) {
		t.Errorf("name now resolves to %x", got.GetActorId())
	}

	// With no restarts left, kill(no_restart=False) is final.
	once := actorSpec(job, "Counter", nil)
	_, err = e.c.RegisterActor(e.ctx, once)
	must(t, err)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(once.GetActorId()), false))
	got, err = e.c.GetActor(e.ctx, protos.MustUniqueID(once.GetActorId()))
	must(t, err)
	if got.GetState() != protos.ActorState_DEAD || got.GetNumRestarts() != 0 {
		t.Errorf("kill(no_restart=False) with max_restarts 0: %v", got)
	}
}

// --- scheduling with the scripted placer ---

func TestActorLifecycleRestarts(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	node := e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()
	owner := &protos.Address{NodeId: node.GetNodeId(), Endpoint: "unix:/driver.sock"}
	spec := actorSpec(job, "Counter", &protos.ActorOptions{Name: "c", MaxRestarts: 1, RunningResources: &protos.Resources{}})
	spec.Owner = owner
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)

	l := e.p.nextLease(t)
	req := l.req
	if !req.GetDedicated() || !bytes.Equal(req.GetJobId(), job.Bytes()) || req.GetFunction() != "Counter" ||
		!proto.Equal(req.GetResources(), &protos.Resources{Amounts: map[string]float64{"CPU": 1}}) ||
		!proto.Equal(req.GetRunningResources(), &protos.Resources{}) || !bytes.Equal(l.node.GetNodeId(), node.GetNodeId()) {
		t.Fatalf("lease request: %v on %x", req, l.node.GetNodeId())
	}
	lease1 := l.grant(101)
	c := e.p.nextCreate(t)
	if !proto.Equal(c.req.GetSpec(), spec) || c.req.GetNumRestarts() != 0 || c.worker.GetPid() != 101 {
		t.Fatalf("CREATE_ACTOR: %v to %v", c.req, c.worker)
	}
	conn1 := c.ok()
	info := expectState(t, events, protos.ActorState_ALIVE)
	if info.GetAddress().GetPid() != 101 || !bytes.Equal(info.GetNodeId(), node.GetNodeId()) || !bytes.Equal(info.GetLeaseId(), lease1) || info.GetStartTimeUnixMs() == 0 {
		t.Fatalf("ALIVE: %v", info)
	}
	if s := e.p.startedLeases(); len(s) != 1 || !bytes.Equal(s[0], lease1) {
		t.Fatalf("NOTIFY_ACTOR_STARTED leases: %x", s)
	}

	// The worker dies: restart on a fresh worker, constructor re-run.
	_ = conn1.Close()
	info = expectState(t, events, protos.ActorState_RESTARTING)
	if info.GetNumRestarts() != 1 || !strings.Contains(info.GetDeathCause(), "(pid 101) died") || info.GetAddress() != nil {
		t.Fatalf("RESTARTING: %v", info)
	}
	e.p.waitReturned(t, lease1)
	lease2 := e.p.nextLease(t).grant(102)
	c = e.p.nextCreate(t)
	if c.req.GetNumRestarts() != 1 {
		t.Errorf("CREATE_ACTOR after a restart: num_restarts %d", c.req.GetNumRestarts())
	}
	conn2 := c.ok()
	info = expectState(t, events, protos.ActorState_ALIVE)
	if info.GetAddress().GetPid() != 102 || info.GetNumRestarts() != 1 {
		t.Fatalf("ALIVE again: %v", info)
	}

	// No restarts left: the next death is final, and frees the name.
	_ = conn2.Close()
	info = expectState(t, events, protos.ActorState_DEAD)
	if info.GetDeathCause() != "the actor's worker process (pid 102) died" || info.GetEndTimeUnixMs() == 0 {
		t.Fatalf("DEAD: %v", info)
	}
	e.p.waitReturned(t, lease2)
	e.p.noLease(t, 50*time.Millisecond)
	if _, err := e.c.GetNamedActor(e.ctx, "c", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("dead actor's name: %v", err)
	}
}

func TestActorConstructorError(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	spec := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: -1})
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	lease := e.p.nextLease(t).grant(7)
	c := e.p.nextCreate(t)
	conn := newFakeConn()
	c.answer <- createAnswer{conn: conn, rep: &protos.CreateActorReply{Error: &protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_TASK, Function: "Counter", Message: "boom"}}}
	info := expectState(t, events, protos.ActorState_DEAD)
	if info.GetCreationError().GetMessage() != "boom" || !strings.Contains(info.GetDeathCause(), "constructor failed: boom") {
		t.Fatalf("DEAD after constructor error: %v", info)
	}
	e.p.waitReturned(t, lease)
	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Error("connection to the failed actor's worker left open")
	}
	e.p.noLease(t, 50*time.Millisecond)
	if len(e.p.startedLeases()) != 0 {
		t.Error("NOTIFY_ACTOR_STARTED sent for an actor whose constructor failed")
	}
}

func TestActorKillAlive(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	spec := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: -1})
	id := protos.MustUniqueID(spec.GetActorId())
	events, lease1, conn1, _ := e.startActor(t, spec, 11)

	must(t, e.c.KillActor(e.ctx, id, false))
	info := expectState(t, events, protos.ActorState_RESTARTING)
	if info.GetDeathCause() != deathKilledRestart || info.GetNumRestarts() != 1 {
		t.Fatalf("RESTARTING after kill: %v", info)
	}
	<-conn1.Done()
	e.p.waitReturned(t, lease1)
	if k := e.p.killRequests(); len(k) != 1 || k[0].GetNoRestart() || !bytes.Equal(k[0].GetActorId(), id.Bytes()) {
		t.Fatalf("KILL_ACTOR requests: %v", k)
	}
	lease2 := e.p.nextLease(t).grant(12)
	conn2 := e.p.nextCreate(t).ok()
	expectState(t, events, protos.ActorState_ALIVE)

	// no_restart wins over restarts left.
	must(t, e.c.KillActor(e.ctx, id, true))
	info = expectState(t, events, protos.ActorState_DEAD)
	if info.GetDeathCause() != deathKilled {
		t.Fatalf("DEAD after kill(no_restart=True): %v", info)
	}
	<-conn2.Done()
	e.p.waitReturned(t, lease2)
	if k := e.p.killRequests(); len(k) != 2 || !k[1].GetNoRestart() {
		t.Fatalf("KILL_ACTOR requests: %v", k)
	}
	e.p.noLease(t, 50*time.Millisecond)
	noEvent(t, events, 50*time.Millisecond)
}

// A worker that ignores KILL_ACTOR loses its lease anyway after a grace
// period, which makes the raylet kill it.
func TestActorKillUncooperativeWorker(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.p.mu.Lock()
	e.p.keepAliveOnKill = true
	e.p.mu.Unlock()
	e.addNode(t, "n1", 4)
	spec := actorSpec(protos.NewUniqueID(), "Counter", nil)
	events, lease, _, _ := e.startActor(t, spec, 21)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(spec.GetActorId()), true))
	expectState(t, events, protos.ActorState_DEAD)
	e.p.waitReturned(t, lease)
}

func TestActorExitedItself(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	spec := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: -1})
	events, lease, conn, create := e.startActor(t, spec, 31)
	create.exited("done here")
	_ = conn.Close() // the worker exits after answering ACTOR_EXITED
	info := expectState(t, events, protos.ActorState_DEAD)
	if info.GetDeathCause() != "the actor exited itself: done here" || info.GetNumRestarts() != 0 {
		t.Fatalf("DEAD after exit: %v", info)
	}
	e.p.waitReturned(t, lease)
	e.p.noLease(t, 50*time.Millisecond)
	noEvent(t, events, 50*time.Millisecond)

	// ACTOR_EXITED overtaking the creation result: ALIVE, then DEAD.
	early := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: -1})
	events = e.watch(t, early)
	_, err := e.c.RegisterActor(e.ctx, early)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	lease = e.p.nextLease(t).grant(32)
	c := e.p.nextCreate(t)
	c.exited("early")
	// Let the manager see the exit before the creation result.
	time.Sleep(20 * time.Millisecond)
	conn = c.ok()
	expectState(t, events, protos.ActorState_ALIVE)
	info = expectState(t, events, protos.ActorState_DEAD)
	if info.GetDeathCause() != "the actor exited itself: early" {
		t.Fatalf("DEAD after early exit: %v", info)
	}
	_ = conn.Close()
	e.p.waitReturned(t, lease)
	e.p.noLease(t, 50*time.Millisecond)
}

func TestActorJobFinished(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := newJob("driver")
	must(t, e.c.RegisterJob(e.ctx, job))
	jobID := protos.MustUniqueID(job.GetJobId())

	plain := actorSpec(jobID, "Counter", &protos.ActorOptions{MaxRestarts: -1, Name: "plain"})
	detached := actorSpec(jobID, "Counter", &protos.ActorOptions{Detached: true, Name: "detached"})
	plainEvents, plainLease, _, _ := e.startActor(t, plain, 41)
	detachedEvents, _, _, _ := e.startActor(t, detached, 42)
	pending := actorSpec(jobID, "Counter", nil)
	pendingEvents := e.watch(t, pending)
	_, err := e.c.RegisterActor(e.ctx, pending)
	must(t, err)
	expectState(t, pendingEvents, protos.ActorState_PENDING_CREATION)
	pendingLease := e.p.nextLease(t) // left waiting, as on a full node

	must(t, e.c.FinishJob(e.ctx, jobID))
	info := expectState(t, plainEvents, protos.ActorState_DEAD)
	if info.GetDeathCause() != deathJobFinished {
		t.Errorf("non-detached actor: %v", info)
	}
	expectState(t, pendingEvents, protos.ActorState_DEAD)
	e.p.waitReturned(t, plainLease)
	if k := e.p.killRequests(); len(k) != 1 || !k[0].GetNoRestart() {
		t.Errorf("KILL_ACTOR requests: %v", k)
	}
	noEvent(t, detachedEvents, 100*time.Millisecond)
	got, err := e.c.GetNamedActor(e.ctx, "detached", "")
	must(t, err)
	if got.GetState() != protos.ActorState_ALIVE {
		t.Errorf("detached actor after its job finished: %v", got.GetState())
	}
	// The pending lease is granted later: it goes straight back.
	late := pendingLease.grant(43)
	e.p.waitReturned(t, late)
	e.p.noCreate(t, 50*time.Millisecond)

	if _, err := e.c.RegisterActor(e.ctx, actorSpec(jobID, "Counter", nil)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "finished") {
		t.Errorf("register for a finished job: %v", err)
	}
	// A job registered again (its driver starting over) takes actors again.
	must(t, e.c.RegisterJob(e.ctx, job))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		_, err := e.c.RegisterActor(e.ctx, actorSpec(jobID, "Counter", nil))
		return err
	})
}

func TestActorKilledWhileCreating(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	spec := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: -1})
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	lease := e.p.nextLease(t).grant(51)
	c := e.p.nextCreate(t)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(spec.GetActorId()), true))
	expectState(t, events, protos.ActorState_DEAD)
	e.p.waitReturned(t, lease)
	// The constructor finishes after all: its result is discarded.
	conn := c.ok()
	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection of a discarded creation left open")
	}
	noEvent(t, events, 50*time.Millisecond)
}

func TestActorLeaseFailures(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	n1 := e.addNode(t, "n1", 4)
	n2 := e.addNode(t, "n2", 2)
	spec := actorSpec(protos.NewUniqueID(), "Counter", nil)
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)

	// A transport failure is retried (same node: it is still the best).
	l := e.p.nextLease(t)
	if !bytes.Equal(l.node.GetNodeId(), n1.GetNodeId()) {
		t.Fatalf("first lease on %x, want the node with most CPU", l.node.GetNodeId())
	}
	l.fail(fmt.Errorf("%w: connection reset", wire.ErrClosed))
	l = e.p.nextLease(t)
	// A node that does not know the job is skipped.
	l.fail(wire.NewError("unknown_job", "lease request for job x, which is not registered on this node"))
	l = e.p.nextLease(t)
	if !bytes.Equal(l.node.GetNodeId(), n2.GetNodeId()) {
		t.Fatalf("lease after unknown_job on %x, want the other node", l.node.GetNodeId())
	}
	l.fail(wire.NewError("unknown_job", "not registered"))
	info := expectState(t, events, protos.ActorState_DEAD)
	if !strings.Contains(info.GetDeathCause(), "no alive node can start workers") {
		t.Fatalf("DEAD: %v", info)
	}

	// A job whose workers cannot start kills the actor at once.
	spec2 := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: -1})
	events2 := e.watch(t, spec2)
	_, err = e.c.RegisterActor(e.ctx, spec2)
	must(t, err)
	expectState(t, events2, protos.ActorState_PENDING_CREATION)
	e.p.nextLease(t).fail(wire.NewError("binary_mismatch", "worker binary changed"))
	info = expectState(t, events2, protos.ActorState_DEAD)
	if !strings.Contains(info.GetDeathCause(), "binary changed") {
		t.Fatalf("DEAD: %v", info)
	}
}

// A worker lost while its constructor runs counts as a death (as in Ray).
func TestActorWorkerLostDuringCreation(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	spec := actorSpec(protos.NewUniqueID(), "Counter", &protos.ActorOptions{MaxRestarts: 1})
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	lease := e.p.nextLease(t).grant(61)
	e.p.nextCreate(t).answer <- createAnswer{err: fmt.Errorf("%w: EOF", wire.ErrClosed)}
	info := expectState(t, events, protos.ActorState_RESTARTING)
	if !strings.Contains(info.GetDeathCause(), "(pid 61) died while creating") {
		t.Fatalf("RESTARTING: %v", info)
	}
	e.p.waitReturned(t, lease)
	e.p.nextLease(t).grant(62)
	// A worker that answers CREATE_ACTOR with an error cannot host it.
	e.p.nextCreate(t).answer <- createAnswer{err: wire.NewError(wire.CodeUnimplemented, "no handler for method CREATE_ACTOR")}
	info = expectState(t, events, protos.ActorState_DEAD)
	if info.GetCreationError() == nil || !strings.Contains(info.GetDeathCause(), "could not create it") {
		t.Fatalf("DEAD: %v", info)
	}
}

func TestActorRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newActorEnv(t, Options{StoreDir: dir})
	e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()
	alive := actorSpec(job, "Counter", &protos.ActorOptions{Name: "alive", Namespace: "ns", MaxRestarts: -1})
	_, _, _, _ = e.startActor(t, alive, 71)
	dead := actorSpec(job, "Counter", &protos.ActorOptions{Name: "dead", Namespace: "ns"})
	_, err := e.c.RegisterActor(e.ctx, dead)
	must(t, err)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(dead.GetActorId()), true))
	pending := actorSpec(job, "Counter", nil)
	_, err = e.c.RegisterActor(e.ctx, pending)
	must(t, err)
	e.srv.Shutdown()

	e2 := newActorEnv(t, Options{StoreDir: dir})
	all, err := e2.c.ListActors(e2.ctx, job)
	must(t, err)
	states := map[string]protos.ActorState{}
	for _, a := range all {
		states[a.GetSpec().GetOptions().GetName()] = a.GetState()
	}
	if len(all) != 3 || states["alive"] != protos.ActorState_ALIVE || states["dead"] != protos.ActorState_DEAD || states[""] != protos.ActorState_PENDING_CREATION {
		t.Fatalf("recovered actors: %v", states)
	}
	got, err := e2.c.GetNamedActor(e2.ctx, "alive", "ns")
	must(t, err)
	if got.GetAddress().GetPid() != 71 {
		t.Errorf("recovered ALIVE actor: %v", got)
	}
	if _, err := e2.c.GetNamedActor(e2.ctx, "dead", "ns"); !errors.Is(err, ErrNotFound) {
		t.Errorf("dead actor's name after recovery: %v", err)
	}
	// The pending actor is scheduled again (its node is known too).
	l := e2.p.nextLease(t)
	if !bytes.Equal(l.req.GetJobId(), job.Bytes()) {
		t.Errorf("lease after recovery: %v", l.req)
	}
	// The ALIVE one was found on its worker again.
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		e2.p.mu.Lock()
		defer e2.p.mu.Unlock()
		if len(e2.p.attached) != 1 || !bytes.Equal(e2.p.attached[0].GetActorId(), alive.GetActorId()) {
			return fmt.Errorf("ATTACH_ACTOR requests %v; want one for the ALIVE actor", e2.p.attached)
		}
		return nil
	})
	e2.srv.Shutdown()

	// Restarted again, with the ALIVE actor's worker gone meanwhile: it is
	// restarted (it had restarts left: -1), keeping its name.
	gone := newFakePlacer()
	gone.attachErr = errors.New("connection refused")
	e3 := newActorEnvWith(t, Options{StoreDir: dir}, gone)
	// Its node has to report to the new GCS, as raylets do.
	e3.addNode(t, "n1", 4)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got, err := e3.c.GetNamedActor(e3.ctx, "alive", "ns")
		if err != nil {
			return err
		}
		if got.GetState() != protos.ActorState_RESTARTING || got.GetNumRestarts() != 1 {
			return fmt.Errorf("actor whose worker is gone: %v", got.GetState())
		}
		return nil
	})
}

func TestActorMalformedRequests(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	for subject, rep := range map[string]replyWithError{
		SubjectActorRegister: &protos.RegisterActorReply{},
		SubjectActorGet:      &protos.GetActorReply{},
		SubjectActorList:     &protos.ListActorsReply{},
		SubjectActorKill:     &protos.KillActorGcsReply{},
	} {
		m, err := e.c.NATS().RequestWithContext(e.ctx, subject, garbage)
		must(t, err)
		must(t, proto.Unmarshal(m.Data, rep))
		if e := rep.GetError(); e.GetCode() != CodeInvalid || !strings.Contains(e.GetMessage(), subject) {
			t.Errorf("%s: %v", subject, e)
		}
	}
	// Bad ids.
	if _, err := e.c.ListActors(e.ctx, protos.JobID{}); err != nil {
		t.Fatal(err)
	}
	rep := &protos.KillActorGcsReply{}
	if err := e.c.call(e.ctx, SubjectActorKill, &protos.KillActorGcsRequest{ActorId: []byte{1, 2}}, rep); !errors.Is(err, ErrInvalid) {
		t.Errorf("kill with a short id: %v", err)
	}
	if err := e.c.call(e.ctx, SubjectActorList, &protos.ListActorsRequest{JobId: []byte{1}}, &protos.ListActorsReply{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("list with a short job id: %v", err)
	}
}

func TestAlreadyExistsCodeRoundTrip(t *testing.T) {
	t.Parallel()
	e := toGcsError(fmt.Errorf("%w: name x", ErrAlreadyExists))
	if e.GetCode() != CodeAlreadyExists || e.GetMessage() != "name x" {
		t.Fatalf("toGcsError: %v", e)
	}
	if err := replyError("s", e); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("replyError: %v", err)
	}
}
