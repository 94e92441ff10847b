package gcs

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// --- the scripted placer's packed side: requests on host connections are
// recorded in the order sent, and the test answers them ---

type fakePacked struct {
	mu    sync.Mutex
	conns []*fakeHostConn
	ops   []*fakeOp
	next  int
}

type fakeHostConn struct {
	*fakeConn
	worker *protos.Address
	exited func(protos.UniqueID, string)
}

// fakeOp is one CREATE_ACTOR or KILL_ACTOR sent on a host connection.
type fakeOp struct {
	conn       *fakeHostConn
	create     *protos.CreateActorRequest
	kill       *protos.KillActorRequest
	createDone func(*protos.CreateActorReply, error)
	killDone   func(error)
}

func (p *fakePlacer) connectHost(ctx context.Context, worker *protos.Address, exited func(protos.UniqueID, string)) (actorConn, error) {
	c := &fakeHostConn{fakeConn: newFakeConn(), worker: worker, exited: exited}
	p.packed.mu.Lock()
	p.packed.conns = append(p.packed.conns, c)
	p.packed.mu.Unlock()
	return c, nil
}

func (p *fakePlacer) createOn(conn actorConn, req *protos.CreateActorRequest, done func(*protos.CreateActorReply, error)) {
	p.packed.mu.Lock()
	defer p.packed.mu.Unlock()
	p.packed.ops = append(p.packed.ops, &fakeOp{conn: conn.(*fakeHostConn), create: req, createDone: done})
}

func (p *fakePlacer) killOn(conn actorConn, req *protos.KillActorRequest, done func(error)) {
	p.packed.mu.Lock()
	defer p.packed.mu.Unlock()
	p.packed.ops = append(p.packed.ops, &fakeOp{conn: conn.(*fakeHostConn), kill: req, killDone: done})
}

// nextOp returns the next request sent on any host connection.
func (p *fakePlacer) nextOp(t *testing.T) *fakeOp {
	t.Helper()
	var op *fakeOp
	checkFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		p.packed.mu.Lock()
		defer p.packed.mu.Unlock()
		if p.packed.next < len(p.packed.ops) {
			op = p.packed.ops[p.packed.next]
			p.packed.next++
			return nil
		}
		return fmt.Errorf("no request on a packed host's connection")
	})
	return op
}

func (p *fakePlacer) noOp(t *testing.T, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	p.packed.mu.Lock()
	defer p.packed.mu.Unlock()
	if p.packed.next < len(p.packed.ops) {
		op := p.packed.ops[p.packed.next]
		t.Fatalf("unexpected request on a packed host's connection: create %v kill %v", op.create, op.kill)
	}
}

func (op *fakeOp) expectCreate(t *testing.T, spec *protos.ActorSpec) *fakeOp {
	t.Helper()
	if op.create == nil || !bytes.Equal(op.create.GetSpec().GetActorId(), spec.GetActorId()) {
		t.Fatalf("want CREATE_ACTOR of %x, got create %v kill %v", spec.GetActorId(), op.create.GetSpec().GetActorId(), op.kill)
	}
	return op
}

func (op *fakeOp) expectKill(t *testing.T, spec *protos.ActorSpec, noRestart bool) *fakeOp {
	t.Helper()
	if op.kill == nil || !bytes.Equal(op.kill.GetActorId(), spec.GetActorId()) || op.kill.GetNoRestart() != noRestart {
		t.Fatalf("want KILL_ACTOR{%x, no_restart %v}, got create %v kill %v", spec.GetActorId(), noRestart, op.create.GetSpec().GetActorId(), op.kill)
	}
	return op
}

func (op *fakeOp) ok() {
	if op.create != nil {
		op.createDone(&protos.CreateActorReply{}, nil)
	} else {
		op.killDone(nil)
	}
}

// --- helpers ---

func packedSpec(job protos.JobID, opts *protos.ActorOptions) *protos.ActorSpec {
	if opts == nil {
		opts = &protos.ActorOptions{}
	}
	opts.Packed = true
	opts.PlacementResources = &protos.Resources{}
	opts.RunningResources = &protos.Resources{}
	return actorSpec(job, "Counter", opts)
}

// registerPacked registers spec and waits for PENDING_CREATION.
func (e *actorEnv) registerPacked(t *testing.T, spec *protos.ActorSpec) <-chan *protos.ActorInfo {
	t.Helper()
	events := e.watch(t, spec)
	_, err := e.c.RegisterActor(e.ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	return events
}

// expectHostLease checks the lease request of a packed host.
func expectHostLease(t *testing.T, l *fakeLease, job protos.JobID) {
	t.Helper()
	r := l.req
	if !r.GetDedicated() || len(r.GetResources().GetAmounts()) != 0 || len(r.GetRunningResources().GetAmounts()) != 0 || !bytes.Equal(r.GetJobId(), job.Bytes()) {
		t.Fatalf("packed host lease request: %v", r)
	}
}

func expectAlive(t *testing.T, events <-chan *protos.ActorInfo, pid int32, lease []byte) *protos.ActorInfo {
	t.Helper()
	info := expectState(t, events, protos.ActorState_ALIVE)
	if info.GetAddress().GetPid() != pid || !bytes.Equal(info.GetLeaseId(), lease) {
		t.Fatalf("ALIVE record: pid %d lease %x, want pid %d lease %x", info.GetAddress().GetPid(), info.GetLeaseId(), pid, lease)
	}
	return info
}

func (p *fakePlacer) hostConns() []*fakeHostConn {
	p.packed.mu.Lock()
	defer p.packed.mu.Unlock()
	return append([]*fakeHostConn(nil), p.packed.conns...)
}

func (p *fakePlacer) returnedLeases() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.returned...)
}

// --- tests ---

// Packed actors of a job share one host per node: one lease, one
// connection. Actors placed while its lease is pending wait for it.
func TestPackedHostReuseAndQueueing(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()

	specs := []*protos.ActorSpec{packedSpec(job, nil), packedSpec(job, nil), packedSpec(job, nil)}
	var events []<-chan *protos.ActorInfo
	for _, s := range specs {
		events = append(events, e.registerPacked(t, s))
	}
	l := e.p.nextLease(t)
	expectHostLease(t, l, job)
	// The three wait for the one lease.
	e.p.noLease(t, 50*time.Millisecond)
	e.p.noOp(t, 0)
	lease := l.grant(500)
	// Sent all at once, answered in any order.
	ops := make([]*fakeOp, len(specs))
	for i := range specs {
		ops[i] = e.p.nextOp(t)
	}
	for i := len(ops) - 1; i >= 0; i-- {
		ops[i].expectCreate(t, specs[i]).ok()
	}
	for _, ev := range events {
		expectAlive(t, ev, 500, lease)
	}
	if conns := e.p.hostConns(); len(conns) != 1 {
		t.Fatalf("%d connections to packed hosts, want 1", len(conns))
	}

	// A later actor goes to the same host, without a lease of its own.
	later := packedSpec(job, nil)
	ev := e.registerPacked(t, later)
	e.p.nextOp(t).expectCreate(t, later).ok()
	expectAlive(t, ev, 500, lease)
	e.p.noLease(t, 50*time.Millisecond)
	if s := e.p.startedLeases(); len(s) != 0 {
		t.Errorf("NOTIFY_ACTOR_STARTED sent for a packed host: %x", s)
	}

	// Another job gets a host of its own.
	other := packedSpec(protos.NewUniqueID(), nil)
	e.registerPacked(t, other)
	e.p.nextLease(t)
}

// Ending one packed actor (kill, with or without restart; constructor
// failure; exiting itself) leaves its host, the host's connection and the
// other actors alone.
func TestPackedIndividualEnds(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()

	keep := packedSpec(job, nil)
	keepEvents := e.registerPacked(t, keep)
	lease := e.p.nextLease(t).grant(600)
	e.p.nextOp(t).expectCreate(t, keep).ok()
	expectAlive(t, keepEvents, 600, lease)
	conn := e.p.hostConns()[0]

	start := func(spec *protos.ActorSpec) <-chan *protos.ActorInfo {
		t.Helper()
		ev := e.registerPacked(t, spec)
		e.p.nextOp(t).expectCreate(t, spec).ok()
		expectAlive(t, ev, 600, lease)
		return ev
	}

	// kill(no_restart=True): KILL_ACTOR for that actor only.
	doomed := packedSpec(job, &protos.ActorOptions{MaxRestarts: -1})
	ev := start(doomed)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(doomed.GetActorId()), true))
	info := expectState(t, ev, protos.ActorState_DEAD)
	if info.GetDeathCause() != deathKilled {
		t.Fatalf("DEAD: %v", info)
	}
	e.p.nextOp(t).expectKill(t, doomed, true).ok()

	// kill(no_restart=False): re-created on the same host, once the
	// worker has let the old incarnation go.
	again := packedSpec(job, &protos.ActorOptions{MaxRestarts: 1})
	ev = start(again)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(again.GetActorId()), false))
	expectState(t, ev, protos.ActorState_RESTARTING)
	kill := e.p.nextOp(t).expectKill(t, again, false)
	e.p.noOp(t, 50*time.Millisecond)
	kill.ok()
	op := e.p.nextOp(t).expectCreate(t, again)
	if op.create.GetNumRestarts() != 1 || op.conn != conn {
		t.Fatalf("re-creation: num_restarts %d, same connection %v", op.create.GetNumRestarts(), op.conn == conn)
	}
	op.ok()
	if info := expectAlive(t, ev, 600, lease); info.GetNumRestarts() != 1 {
		t.Fatalf("ALIVE after restart: %v", info)
	}

	// A failed constructor: DEAD, nothing to kill.
	failing := packedSpec(job, &protos.ActorOptions{MaxRestarts: -1})
	ev = e.registerPacked(t, failing)
	e.p.nextOp(t).expectCreate(t, failing).createDone(&protos.CreateActorReply{Error: &protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_TASK, Message: "boom"}}, nil)
	if info := expectState(t, ev, protos.ActorState_DEAD); info.GetCreationError().GetMessage() != "boom" {
		t.Fatalf("DEAD after constructor error: %v", info)
	}

	// An actor exiting itself: DEAD, nothing to kill.
	exiting := packedSpec(job, &protos.ActorOptions{MaxRestarts: -1})
	ev = start(exiting)
	conn.exited(protos.MustUniqueID(exiting.GetActorId()), "done")
	if info := expectState(t, ev, protos.ActorState_DEAD); info.GetDeathCause() != "the actor exited itself: done" {
		t.Fatalf("DEAD after exit: %v", info)
	}

	// Killed while its constructor runs: the worker is told to drop it
	// once it has it.
	slow := packedSpec(job, &protos.ActorOptions{MaxRestarts: -1})
	ev = e.registerPacked(t, slow)
	create := e.p.nextOp(t).expectCreate(t, slow)
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(slow.GetActorId()), true))
	expectState(t, ev, protos.ActorState_DEAD)
	e.p.noOp(t, 50*time.Millisecond)
	create.ok()
	e.p.nextOp(t).expectKill(t, slow, true).ok()

	e.p.noOp(t, 50*time.Millisecond)
	noEvent(t, keepEvents, 50*time.Millisecond)
	select {
	case <-conn.Done():
		t.Fatal("the host's connection was closed")
	default:
	}
	if r := e.p.returnedLeases(); len(r) != 0 {
		t.Fatalf("leases returned: %x", r)
	}
	e.p.noLease(t, 0)
	info, err := e.c.GetActor(e.ctx, protos.MustUniqueID(keep.GetActorId()))
	must(t, err)
	if info.GetState() != protos.ActorState_ALIVE {
		t.Fatalf("the other actor: %v", info.GetState())
	}

	// The last actors gone, the host is given back after a while.
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(keep.GetActorId()), true))
	expectState(t, keepEvents, protos.ActorState_DEAD)
	e.p.nextOp(t).expectKill(t, keep, true).ok()
	must(t, e.c.KillActor(e.ctx, protos.MustUniqueID(again.GetActorId()), true))
	e.p.nextOp(t).expectKill(t, again, true).ok()
	e.p.waitReturned(t, lease)
	<-conn.Done()
}

// The host's connection closing (its process died) restarts or ends each
// of its actors by its own max_restarts; restarted ones go to a new host.
func TestPackedHostDeath(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()

	var restartable, mortal []*protos.ActorSpec
	events := map[*protos.ActorSpec]<-chan *protos.ActorInfo{}
	for i := 0; i < 3; i++ {
		r := packedSpec(job, &protos.ActorOptions{MaxRestarts: 1})
		m := packedSpec(job, nil)
		restartable, mortal = append(restartable, r), append(mortal, m)
		events[r], events[m] = e.registerPacked(t, r), e.registerPacked(t, m)
	}
	lease := e.p.nextLease(t).grant(700)
	for range 6 {
		e.p.nextOp(t).ok()
	}
	for _, ev := range events {
		expectAlive(t, ev, 700, lease)
	}
	// One more, still being created when the process dies.
	late := packedSpec(job, &protos.ActorOptions{MaxRestarts: 1})
	events[late] = e.registerPacked(t, late)
	e.p.nextOp(t).expectCreate(t, late)
	restartable = append(restartable, late)

	conn := e.p.hostConns()[0]
	_ = conn.Close()
	for _, s := range mortal {
		info := expectState(t, events[s], protos.ActorState_DEAD)
		if !strings.Contains(info.GetDeathCause(), "(pid 700, a packed host) died") {
			t.Fatalf("DEAD: %v", info)
		}
	}
	for _, s := range restartable {
		if info := expectState(t, events[s], protos.ActorState_RESTARTING); info.GetNumRestarts() != 1 {
			t.Fatalf("RESTARTING: %v", info)
		}
	}
	e.p.waitReturned(t, lease)
	// Nothing is killed on a dead connection; a new host is leased.
	l2 := e.p.nextLease(t)
	expectHostLease(t, l2, job)
	e.p.noLease(t, 50*time.Millisecond)
	lease2 := l2.grant(701)
	got := map[string]bool{}
	for range restartable {
		op := e.p.nextOp(t)
		if op.create == nil || op.create.GetNumRestarts() != 1 || op.conn == conn {
			t.Fatalf("after the host died: create %v kill %v", op.create, op.kill)
		}
		got[string(op.create.GetSpec().GetActorId())] = true
		op.ok()
	}
	for _, s := range restartable {
		if !got[string(s.GetActorId())] {
			t.Fatalf("actor %x not re-created", s.GetActorId())
		}
		expectAlive(t, events[s], 701, lease2)
	}
	e.p.noOp(t, 50*time.Millisecond)
}

// A packed host whose lease fails makes each waiting actor handle the
// failure as its own: retried with backoff, or ended.
func TestPackedHostLeaseFailure(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()
	a, b := packedSpec(job, nil), packedSpec(job, nil)
	evA, evB := e.registerPacked(t, a), e.registerPacked(t, b)
	e.p.nextLease(t).fail(fmt.Errorf("%w: connection reset", wire.ErrClosed))
	// Both retry; the first retry opens a new host, the other joins it.
	l := e.p.nextLease(t)
	expectHostLease(t, l, job)
	e.p.noLease(t, 300*time.Millisecond)
	lease := l.grant(800)
	e.p.nextOp(t).ok()
	e.p.nextOp(t).ok()
	expectAlive(t, evA, 800, lease)
	expectAlive(t, evB, 800, lease)

	// A job whose workers cannot start: the waiting actors die.
	job2 := protos.NewUniqueID()
	c := packedSpec(job2, &protos.ActorOptions{MaxRestarts: -1})
	evC := e.registerPacked(t, c)
	e.p.nextLease(t).fail(wire.NewError("worker_start_failed", "exec format error"))
	if info := expectState(t, evC, protos.ActorState_DEAD); !strings.Contains(info.GetDeathCause(), "exec format error") {
		t.Fatalf("DEAD: %v", info)
	}
}

// Packed actors of a finished job die; each is killed on the host, whose
// lease is then given back.
func TestPackedJobFinished(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := newJob("driver")
	must(t, e.c.RegisterJob(e.ctx, job))
	jobID := protos.MustUniqueID(job.GetJobId())
	a, b := packedSpec(jobID, nil), packedSpec(jobID, nil)
	evA, evB := e.registerPacked(t, a), e.registerPacked(t, b)
	lease := e.p.nextLease(t).grant(900)
	e.p.nextOp(t).ok()
	e.p.nextOp(t).ok()
	expectAlive(t, evA, 900, lease)
	expectAlive(t, evB, 900, lease)
	must(t, e.c.FinishJob(e.ctx, jobID))
	expectState(t, evA, protos.ActorState_DEAD)
	expectState(t, evB, protos.ActorState_DEAD)
	killed := map[string]bool{}
	for range 2 {
		op := e.p.nextOp(t)
		if op.kill == nil || !op.kill.GetNoRestart() {
			t.Fatalf("want KILL_ACTOR, got create %v kill %v", op.create, op.kill)
		}
		killed[string(op.kill.GetActorId())] = true
		op.ok()
	}
	if !killed[string(a.GetActorId())] || !killed[string(b.GetActorId())] {
		t.Fatalf("killed %v", killed)
	}
	e.p.waitReturned(t, lease)
}

// Past packedHostActors actors, a host is full and the next actor opens
// another one on the node. Not parallel: it changes the cap.
func TestPackedHostCap(t *testing.T) {
	old := packedHostActors
	packedHostActors = 2
	t.Cleanup(func() { packedHostActors = old })
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	job := protos.NewUniqueID()
	a, b, c := packedSpec(job, nil), packedSpec(job, nil), packedSpec(job, nil)
	evA, evB := e.registerPacked(t, a), e.registerPacked(t, b)
	lease1 := e.p.nextLease(t).grant(1001)
	e.p.nextOp(t).ok()
	e.p.nextOp(t).ok()
	expectAlive(t, evA, 1001, lease1)
	expectAlive(t, evB, 1001, lease1)
	evC := e.registerPacked(t, c)
	lease2 := e.p.nextLease(t).grant(1002)
	e.p.nextOp(t).expectCreate(t, c).ok()
	expectAlive(t, evC, 1002, lease2)
}
