package raylet

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// TestMain turns the test binary into a minimal worker when a raylet
// under test starts it: it registers and then waits for its connection
// to close (or to be killed), which is all the raylet's pool needs.
func TestMain(m *testing.M) {
	if os.Getenv(EnvWorker) == "1" {
		os.Exit(fakeWorker())
	}
	os.Exit(m.Run())
}

func fakeWorker() int {
	id, err := hex.DecodeString(os.Getenv(EnvWorkerID))
	if err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	creds, err := readCreds()
	if err != nil {
		return 5
	}
	c, err := wire.Dial(ctx, os.Getenv(EnvRaylet), nil, wire.WithAuthenticator(creds.Handshaker(auth.LabelWire)))
	if err != nil {
		return 3
	}
	if err := c.Call(ctx, protos.Method_REGISTER_WORKER, &protos.RegisterWorkerRequest{WorkerId: id, Pid: int32(os.Getpid())}, &protos.RegisterWorkerReply{}); err != nil {
		return 4
	}
	<-c.Done()
	return 0
}

// --- resource bookkeeping on the state alone (no processes) ---

type bookkeeping struct {
	t     *testing.T
	s     *state
	job   *jobState
	owner *wire.Conn
	seq   uint64
}

// newBookkeeping builds a raylet state with cpus CPUs and nWorkers
// registered (process-less) workers of one job.
func newBookkeeping(t *testing.T, cpus float64, nWorkers int) *bookkeeping {
	t.Helper()
	res, err := FromMap(map[string]float64{CPU: cpus})
	if err != nil {
		t.Fatal(err)
	}
	// MaxWorkers 0: task requests that find no worker wait, since no
	// process can start here (the state has no object store or session);
	// tests must not leave an actor's request waiting for a process.
	r := &Raylet{cfg: Config{Resources: res, MaxWorkers: 0, Logger: zerolog.Nop(), NodeID: protos.NewUniqueID(), Platform: "linux/amd64"}}
	s := newState(r)
	j := &jobState{id: protos.NewUniqueID(), executable: "/nonexistent", workers: map[protos.WorkerID]*workerProc{},
		binaries: []*protos.JobBinary{{Goos: "linux", Goarch: "amd64"}}, binState: prepReady}
	s.jobs[j.id] = j
	for i := 0; i < nWorkers; i++ {
		w := &workerProc{id: protos.NewUniqueID(), job: j, env: j.envFor("", nil), registered: true, leases: map[protos.LeaseID]*leaseState{},
			startedAt: time.Now().Add(time.Duration(i) * time.Millisecond), exited: make(chan struct{})}
		s.workers[w.id] = w
		j.workers[w.id] = w
	}
	a, b := net.Pipe()
	owner, peer := wire.NewConn(a, nil), wire.NewConn(b, nil)
	t.Cleanup(func() { _ = owner.Close(); _ = peer.Close() })
	return &bookkeeping{t: t, s: s, job: j, owner: owner}
}

func res(t *testing.T, m map[string]float64) ResourceSet {
	t.Helper()
	r, err := FromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lease queues a request and dispatches; it returns the granted lease, or
// nil if the request is still queued.
func (b *bookkeeping) lease(demand, running map[string]float64, dedicated bool) *leaseState {
	b.t.Helper()
	b.seq++
	before := map[protos.LeaseID]bool{}
	for id := range b.s.leases {
		before[id] = true
	}
	lr := &leaseRequest{conn: b.owner, req: &wire.Request{Method: protos.Method_REQUEST_WORKER_LEASE, ID: b.seq}, job: b.job.id,
		demand: res(b.t, demand), dedicated: dedicated, queuedAt: time.Now()}
	if dedicated {
		lr.running = res(b.t, running)
	}
	b.s.queue = append(b.s.queue, lr)
	b.s.dispatch()
	for id, l := range b.s.leases {
		if !before[id] {
			return l
		}
	}
	return nil
}

func (b *bookkeeping) cpu() float64 { return b.s.available.Get(CPU) }

func TestDedicatedLeaseBookkeeping(t *testing.T) {
	one := map[string]float64{CPU: 1}
	none := map[string]float64{}
	half := map[string]float64{CPU: 0.5}
	for _, tc := range []struct {
		name              string
		placement         map[string]float64
		running           map[string]float64
		afterGrant        float64 // available CPU of 4
		afterStarted      float64
		afterReturn       float64
		startedTwiceNoops bool
	}{
		{name: "ray default: 1 CPU to place, 0 to run", placement: one, running: none, afterGrant: 3, afterStarted: 4, afterReturn: 4},
		{name: "num_cpus=1: holds its CPU while running", placement: one, running: one, afterGrant: 3, afterStarted: 3, afterReturn: 4},
		{name: "fractional running", placement: one, running: half, afterGrant: 3, afterStarted: 3.5, afterReturn: 4},
		{name: "zero placement", placement: none, running: none, afterGrant: 4, afterStarted: 4, afterReturn: 4},
		{name: "running above placement oversubscribes", placement: half, running: one, afterGrant: 3.5, afterStarted: 3, afterReturn: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBookkeeping(t, 4, 2)
			l := b.lease(tc.placement, tc.running, true)
			if l == nil {
				t.Fatal("dedicated lease not granted")
			}
			if !l.dedicated || !l.worker.dedicated {
				t.Fatal("lease or worker not marked dedicated")
			}
			if got := b.cpu(); got != tc.afterGrant {
				t.Errorf("after grant: available CPU %v, want %v", got, tc.afterGrant)
			}
			if err := b.s.actorStarted(l.id); err != nil {
				t.Fatal(err)
			}
			if got := b.cpu(); got != tc.afterStarted {
				t.Errorf("after started: available CPU %v, want %v", got, tc.afterStarted)
			}
			if err := b.s.actorStarted(l.id); err != nil {
				t.Fatalf("second NOTIFY_ACTOR_STARTED: %v", err)
			}
			if got := b.cpu(); got != tc.afterStarted {
				t.Errorf("after a repeated started: available CPU %v, want %v", got, tc.afterStarted)
			}
			w := l.worker
			b.s.returnLease(l.id, false)
			if got := b.cpu(); got != tc.afterReturn {
				t.Errorf("after return: available CPU %v, want %v", got, tc.afterReturn)
			}
			if !w.killed {
				t.Error("returning a dedicated lease did not kill its worker")
			}
		})
	}
}

func TestDedicatedLeaseReturnedBeforeStart(t *testing.T) {
	b := newBookkeeping(t, 2, 1)
	l := b.lease(map[string]float64{CPU: 1}, nil, true)
	if l == nil || b.cpu() != 1 {
		t.Fatalf("grant: %v, available %v", l, b.cpu())
	}
	b.s.returnLease(l.id, false)
	if b.cpu() != 2 || !l.worker.killed {
		t.Fatalf("after return: available %v, killed %v", b.cpu(), l.worker.killed)
	}
}

func TestNotifyActorStartedErrors(t *testing.T) {
	b := newBookkeeping(t, 2, 1)
	var re *wire.RemoteError
	if err := b.s.actorStarted(protos.NewUniqueID()); !errors.As(err, &re) || re.Code != "unknown_lease" {
		t.Errorf("unknown lease: %v", err)
	}
	shared := b.lease(map[string]float64{CPU: 1}, nil, false)
	if shared == nil {
		t.Fatal("shared lease not granted")
	}
	if err := b.s.actorStarted(shared.id); !errors.As(err, &re) || re.Code != "invalid" {
		t.Errorf("shared lease: %v", err)
	}
	if b.cpu() != 1 {
		t.Errorf("a refused NOTIFY_ACTOR_STARTED changed resources: %v", b.cpu())
	}
}

// A dedicated lease never shares its worker, and only takes a worker that
// holds no lease.
func TestDedicatedWorkerIsolation(t *testing.T) {
	b := newBookkeeping(t, 4, 2)
	shared := b.lease(map[string]float64{CPU: 1}, nil, false)
	actor := b.lease(map[string]float64{CPU: 1}, nil, true)
	if shared == nil || actor == nil {
		t.Fatal("leases not granted")
	}
	if shared.worker == actor.worker {
		t.Fatal("dedicated lease got the worker of a shared lease")
	}
	// The shared lease's worker is busy and the actor's is dedicated: a
	// second task waits for a new worker (none can start here) rather than
	// landing in the actor's process.
	if l := b.lease(map[string]float64{CPU: 1}, nil, false); l != nil {
		t.Fatalf("task lease granted on worker %s (actor's is %s)", l.worker.id.Short(), actor.worker.id.Short())
	}
	b.s.queue = nil
	// Once the actor started (holding 0 CPU) its worker is still not idle.
	if err := b.s.actorStarted(actor.id); err != nil {
		t.Fatal(err)
	}
	b.s.returnLease(shared.id, false)
	l := b.lease(map[string]float64{CPU: 1}, nil, false)
	if l == nil || l.worker == actor.worker {
		t.Fatalf("task lease after return: %v", l)
	}
	// A worker blocked in Get holds a lease, so it is not fresh either.
	// (Asked directly: dispatching would start a process for the actor.)
	b.s.setBlocked(l.id, true)
	if w := b.s.freshWorker(b.job, b.job.envFor("", nil)); w != nil {
		t.Fatalf("worker %s with a blocked lease is fresh for an actor", w.id.Short())
	}
}

func TestOwnerDisconnectEndsDedicatedLeases(t *testing.T) {
	b := newBookkeeping(t, 4, 2)
	actor := b.lease(map[string]float64{CPU: 1}, nil, true)
	task := b.lease(map[string]float64{CPU: 1}, nil, false)
	if actor == nil || task == nil {
		t.Fatal("leases not granted")
	}
	_ = b.owner.Close()
	b.s.connClosed(b.owner)
	if len(b.s.leases) != 0 || b.cpu() != 4 {
		t.Fatalf("after owner disconnect: %d leases, available %v", len(b.s.leases), b.cpu())
	}
	if !actor.worker.killed {
		t.Error("actor worker not killed when its lease owner left")
	}
	if task.worker.killed {
		t.Error("task worker killed when its lease owner left")
	}
}

func TestWorkersToStart(t *testing.T) {
	for _, tc := range []struct {
		name                                                    string
		max, pool, tasks, tasksStarting, actors, actorsStarting int
		wantTasks, wantActors                                   int
	}{
		{name: "idle", max: 4, pool: 2},
		{name: "tasks up to the cap", max: 4, pool: 2, tasks: 5, wantTasks: 2},
		{name: "tasks already starting", max: 4, pool: 3, tasks: 2, tasksStarting: 1, wantTasks: 1},
		{name: "pool full", max: 2, pool: 2, tasks: 3},
		{name: "actors beyond the cap", max: 2, pool: 2, tasks: 3, actors: 2, wantActors: 2},
		{name: "actors already starting", max: 2, pool: 2, actors: 3, actorsStarting: 2, wantActors: 1},
		{name: "both", max: 4, pool: 1, tasks: 2, actors: 1, wantTasks: 2, wantActors: 1},
		{name: "pool above cap (reservations released)", max: 1, pool: 3, tasks: 1},
	} {
		gotTasks, gotActors := workersToStart(tc.max, tc.pool, tc.tasks, tc.tasksStarting, tc.actors, tc.actorsStarting)
		if gotTasks != tc.wantTasks || gotActors != tc.wantActors {
			t.Errorf("%s: start %d for tasks, %d for actors; want %d, %d", tc.name, gotTasks, gotActors, tc.wantTasks, tc.wantActors)
		}
	}
}

func TestReservationsReleased(t *testing.T) {
	b := newBookkeeping(t, 4, 2)
	var reserved *workerProc
	for _, w := range b.job.workers {
		reserved = w
		break
	}
	reserved.reserved = true
	b.job.reserved = 1
	// A task does not get the reserved worker while an actor waits...
	b.s.queue = append(b.s.queue, &leaseRequest{conn: b.owner, req: &wire.Request{ID: 99}, job: b.job.id, demand: res(t, map[string]float64{CPU: 8}), dedicated: true})
	l := b.lease(map[string]float64{CPU: 1}, nil, false)
	if l == nil || l.worker == reserved {
		t.Fatalf("task lease while an actor waits: %v", l)
	}
	// ...and gets it once no actor waits any more.
	b.s.queue = b.s.queue[:0]
	l = b.lease(map[string]float64{CPU: 1}, nil, false)
	if l == nil || l.worker != reserved || reserved.reserved || b.job.reserved != 0 {
		t.Fatalf("task lease after the actor left: %v (reserved %v, count %d)", l, reserved.reserved, b.job.reserved)
	}
}

// --- a real raylet with real (fake-worker) processes ---

func startRaylet(t *testing.T, cpus float64, maxWorkers int) *Raylet {
	t.Helper()
	r, err := New(Config{
		Credentials:       testCreds,
		SessionDir:        t.TempDir(),
		Resources:         res(t, map[string]float64{CPU: cpus}),
		ObjectStoreMemory: 16 << 20,
		MaxWorkers:        maxWorkers,
		Logger:            zerolog.Nop(),
		ReportInterval:    time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	return r
}

func dialRaylet(t *testing.T, r *Raylet) *wire.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, r.Endpoint(), nil, wire.WithAuthenticator(testCreds.Handshaker(auth.LabelWire)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDedicatedLeaseOverTheWire(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// MaxWorkers 1: the driver's prestarted worker fills the task cap, so
	// the actors' workers can only come from the dedicated allowance.
	r := startRaylet(t, 2, 1)
	driver := dialRaylet(t, r)
	gcs := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	cpu := func() float64 { return r.NodeInfo().GetAvailable().GetAmounts()[CPU] }

	leaseActor := func(c *wire.Conn) *protos.RequestWorkerLeaseReply {
		t.Helper()
		rep := &protos.RequestWorkerLeaseReply{}
		err := c.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{
			JobId: job.Bytes(), Function: "Counter", Dedicated: true,
			Resources:        &protos.Resources{Amounts: map[string]float64{CPU: 1}},
			RunningResources: &protos.Resources{},
		}, rep)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// Two actors: both get workers although MaxWorkers is 1.
	a1 := leaseActor(gcs)
	a2 := leaseActor(gcs)
	if a1.GetWorker().GetPid() == a2.GetWorker().GetPid() {
		t.Fatal("two dedicated leases share a worker")
	}
	if got := cpu(); got != 0 {
		t.Fatalf("available CPU with two placed actors = %v, want 0", got)
	}
	for _, a := range []*protos.RequestWorkerLeaseReply{a1, a2} {
		if err := gcs.Call(ctx, protos.Method_NOTIFY_ACTOR_STARTED, &protos.NotifyActorStartedRequest{LeaseId: a.GetLeaseId()}, &protos.NotifyActorStartedReply{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := cpu(); got != 2 {
		t.Fatalf("available CPU with two running actors = %v, want 2", got)
	}
	// A task still gets a (shared) worker that is neither actor's.
	task := &protos.RequestWorkerLeaseReply{}
	if err := driver.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Resources: &protos.Resources{Amounts: map[string]float64{CPU: 1}}}, task); err != nil {
		t.Fatal(err)
	}
	if p := task.GetWorker().GetPid(); p == a1.GetWorker().GetPid() || p == a2.GetWorker().GetPid() {
		t.Fatal("task lease granted on an actor's worker")
	}

	var re *wire.RemoteError
	err = gcs.Call(ctx, protos.Method_NOTIFY_ACTOR_STARTED, &protos.NotifyActorStartedRequest{LeaseId: protos.NewUniqueID().Bytes()}, &protos.NotifyActorStartedReply{})
	if !errors.As(err, &re) || re.Code != "unknown_lease" {
		t.Fatalf("NOTIFY_ACTOR_STARTED of an unknown lease: %v", err)
	}

	// Returning a dedicated lease kills its process.
	if err := gcs.Call(ctx, protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: a1.GetLeaseId()}, &protos.ReturnWorkerLeaseReply{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the returned actor's worker to exit", func() bool { return processGone(int(a1.GetWorker().GetPid())) })
	// The lease owner (the GCS) leaving, as when the head restarts, does
	// not end a running actor: the next GCS finds it, and ends it by the
	// lease's id if it must.
	_ = gcs.Close()
	next := dialRaylet(t, r)
	if err := next.Call(ctx, protos.Method_GET_NODE_INFO, &protos.GetNodeInfoRequest{}, &protos.GetNodeInfoReply{}); err != nil {
		t.Fatal(err)
	}
	if processGone(int(a2.GetWorker().GetPid())) {
		t.Fatal("a running actor's worker died with its lease owner's connection")
	}
	if err := next.Call(ctx, protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: a2.GetLeaseId()}, &protos.ReturnWorkerLeaseReply{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the actor's worker to exit after the next lease owner returned its lease", func() bool { return processGone(int(a2.GetWorker().GetPid())) })
	if processGone(int(task.GetWorker().GetPid())) {
		t.Fatal("the task's worker died with the actor lease owner's connection")
	}
	if got := cpu(); got != 1 {
		t.Fatalf("available CPU with one task lease = %v, want 1", got)
	}
}

// With the task pool full and a task queued, a worker started for an
// actor goes to the actor, not to the queued task.
func TestActorWorkerNotTakenByQueuedTask(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := startRaylet(t, 3, 1)
	driver := dialRaylet(t, r)
	gcs := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	oneCPU := &protos.Resources{Amounts: map[string]float64{CPU: 1}}
	task1 := &protos.RequestWorkerLeaseReply{}
	if err := driver.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Resources: oneCPU}, task1); err != nil {
		t.Fatal(err)
	}
	task2 := make(chan *protos.RequestWorkerLeaseReply, 1)
	err = driver.Go(protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Resources: oneCPU}, func(payload []byte, err error) {
		rep := &protos.RequestWorkerLeaseReply{}
		if err == nil {
			err = proto.Unmarshal(payload, rep)
		}
		if err != nil {
			t.Errorf("second task lease: %v", err)
		}
		task2 <- rep
	})
	if err != nil {
		t.Fatal(err)
	}
	// The second task waits: MaxWorkers is 1 and that worker is busy.
	waitFor(t, "the second task to queue", func() bool { return len(r.NodeInfo().GetPending()) == 1 })

	actor := &protos.RequestWorkerLeaseReply{}
	if err := gcs.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Resources: oneCPU, Dedicated: true}, actor); err != nil {
		t.Fatal(err)
	}
	select {
	case rep := <-task2:
		t.Fatalf("the queued task got a worker (pid %d) before its pool had room", rep.GetWorker().GetPid())
	default:
	}
	// Once the first task's lease is back, the second runs on that worker.
	if err := driver.Call(ctx, protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: task1.GetLeaseId()}, &protos.ReturnWorkerLeaseReply{}); err != nil {
		t.Fatal(err)
	}
	select {
	case rep := <-task2:
		if rep.GetWorker().GetPid() != task1.GetWorker().GetPid() {
			t.Errorf("second task on pid %d, want the task worker %d", rep.GetWorker().GetPid(), task1.GetWorker().GetPid())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second task not granted after the first returned its lease")
	}
	if actor.GetWorker().GetPid() == task1.GetWorker().GetPid() {
		t.Fatal("actor shares the task worker")
	}
}
