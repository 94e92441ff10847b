package raylet

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

func TestKeepAfterDriver(t *testing.T) {
	for _, tc := range []struct {
		name            string
		w               workerProc
		detachedWaiting bool
		want            bool
	}{
		{name: "idle task worker", w: workerProc{registered: true}},
		{name: "idle task worker, detached actor waiting", w: workerProc{registered: true}, detachedWaiting: true},
		{name: "busy task worker", w: workerProc{registered: true, active: 1}},
		{name: "non-detached actor", w: workerProc{registered: true, dedicated: true}, detachedWaiting: true},
		{name: "detached actor", w: workerProc{registered: true, dedicated: true, detached: true}, want: true},
		{name: "killed detached actor stays counted", w: workerProc{registered: true, dedicated: true, detached: true, killed: true}, want: true},
		{name: "starting for an actor, none detached waits", w: workerProc{reserved: true}},
		{name: "starting for an actor, detached actor waiting", w: workerProc{reserved: true}, detachedWaiting: true, want: true},
		{name: "registered for an actor, detached actor waiting", w: workerProc{registered: true, reserved: true}, detachedWaiting: true, want: true},
		{name: "killed while starting for an actor", w: workerProc{reserved: true, killed: true}, detachedWaiting: true},
	} {
		if got := keepAfterDriver(&tc.w, tc.detachedWaiting); got != tc.want {
			t.Errorf("%s: keep %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestKeepFinishedJob(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const linger = time.Minute
	for _, tc := range []struct {
		name      string
		busy      bool
		idleSince time.Time
		now       time.Time
		wantKeep  bool
		wantIdle  time.Time
	}{
		{name: "busy", busy: true, now: t0, wantKeep: true},
		{name: "busy again after idling", busy: true, idleSince: t0, now: t0.Add(2 * linger), wantKeep: true},
		{name: "becomes idle", now: t0, wantKeep: true, wantIdle: t0},
		{name: "idle within the linger", idleSince: t0, now: t0.Add(linger - time.Nanosecond), wantKeep: true, wantIdle: t0},
		{name: "idle for the linger", idleSince: t0, now: t0.Add(linger), wantIdle: t0},
		{name: "idle beyond the linger", idleSince: t0, now: t0.Add(time.Hour), wantIdle: t0},
	} {
		keep, idle := keepFinishedJob(tc.busy, tc.idleSince, tc.now, linger)
		if keep != tc.wantKeep || !idle.Equal(tc.wantIdle) {
			t.Errorf("%s: keep %v idle since %v; want %v, %v", tc.name, keep, idle, tc.wantKeep, tc.wantIdle)
		}
	}
	if keep, _ := keepFinishedJob(false, time.Time{}, t0, 0); keep {
		t.Error("a zero linger keeps an idle job")
	}
}

// fakeClock is the raylet state's clock in tests.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// pipeConn returns one end of an in-memory connection (the other end
// reads and discards what the raylet state replies).
func pipeConn(t *testing.T) *wire.Conn {
	t.Helper()
	a, b := net.Pipe()
	c, peer := wire.NewConn(a, nil), wire.NewConn(b, nil)
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return c
}

// request queues a lease request of b's job from conn without
// dispatching (see bookkeeping.lease, which dispatches).
func (b *bookkeeping) request(conn *wire.Conn, demand map[string]float64, dedicated, detached bool) *leaseRequest {
	b.t.Helper()
	b.seq++
	lr := &leaseRequest{conn: conn, req: &wire.Request{Method: protos.Method_REQUEST_WORKER_LEASE, ID: b.seq}, job: b.job.id,
		demand: res(b.t, demand), dedicated: dedicated, detached: detached, queuedAt: time.Now()}
	if dedicated {
		lr.running = res(b.t, map[string]float64{})
	}
	b.s.queue = append(b.s.queue, lr)
	return lr
}

// grantNew dispatches and returns the lease granted to lr's connection
// that is new since before (nil if none).
func (b *bookkeeping) grantNew() *leaseState {
	before := map[protos.LeaseID]bool{}
	for id := range b.s.leases {
		before[id] = true
	}
	b.s.dispatch()
	for id, l := range b.s.leases {
		if !before[id] {
			return l
		}
	}
	return nil
}

func (b *bookkeeping) addWorker(registered, reserved bool) *workerProc {
	w := &workerProc{id: protos.NewUniqueID(), job: b.job, env: b.job.envFor("", nil), registered: registered, leases: map[protos.LeaseID]*leaseState{},
		startedAt: time.Now(), exited: make(chan struct{})}
	b.s.workers[w.id] = w
	b.job.workers[w.id] = w
	if !registered {
		b.job.starting++
	}
	if reserved {
		w.reserved = true
		b.job.reserved++
	}
	return w
}

func leaseReq(job protos.JobID, dedicated, detached bool) *protos.RequestWorkerLeaseRequest {
	return &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Function: "f", Dedicated: dedicated, Detached: detached,
		Resources: &protos.Resources{Amounts: map[string]float64{CPU: 1}}, RunningResources: &protos.Resources{}}
}

func remoteCode(err error) string {
	var re *wire.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

// The life of a job's state after its driver left: its detached actor
// lives on and can be restarted; everything else of the job ends; the
// job is forgotten FinishedJobLinger after nothing of it runs or waits.
func TestDriverLeftKeepsDetachedActors(t *testing.T) {
	b := newBookkeeping(t, 8, 0)
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	b.s.now = clock.Now
	b.s.r.cfg.FinishedJobLinger = time.Minute
	driver := pipeConn(t)
	b.job.driver = driver
	driver.SetValue(b.job)
	gcs := b.owner
	one := map[string]float64{CPU: 1}

	// A detached actor, a non-detached one, a task of the driver's and an
	// idle task worker.
	b.addWorker(true, false)
	b.request(gcs, one, true, true)
	detached := b.grantNew()
	b.addWorker(true, false)
	b.request(gcs, one, true, false)
	actor := b.grantNew()
	b.addWorker(true, false)
	b.request(driver, one, false, false)
	task := b.grantNew()
	idle := b.addWorker(true, false)
	if detached == nil || actor == nil || task == nil {
		t.Fatalf("leases: detached %v, actor %v, task %v", detached, actor, task)
	}
	if !detached.detached || !detached.worker.detached || actor.detached || actor.worker.detached {
		t.Fatal("detached flags of leases or workers wrong")
	}
	// A worker starting for a detached actor that waits (on a resource
	// the node lacks, so nothing else starts here), and requests that the
	// job's end refuses.
	starting := b.addWorker(false, true)
	waitingDetached := b.request(gcs, map[string]float64{"GPU": 1}, true, true)
	b.request(gcs, map[string]float64{"GPU": 1}, true, false)
	b.request(gcs, map[string]float64{"GPU": 1}, false, false)
	b.s.dispatch()
	if len(b.s.queue) != 3 {
		t.Fatalf("%d requests queued, want 3", len(b.s.queue))
	}

	_ = driver.Close()
	b.s.connClosed(driver)
	for _, c := range []struct {
		name   string
		w      *workerProc
		killed bool
	}{
		{"detached actor", detached.worker, false},
		{"non-detached actor", actor.worker, true},
		{"task", task.worker, true},
		{"idle", idle, true},
		{"starting for the waiting detached actor", starting, false},
	} {
		if c.w.killed != c.killed {
			t.Errorf("%s's worker: killed %v, want %v", c.name, c.w.killed, c.killed)
		}
	}
	if _, ok := b.s.leases[task.id]; ok {
		t.Error("the driver's task lease outlived the driver")
	}
	if len(b.s.queue) != 1 || b.s.queue[0] != waitingDetached {
		t.Errorf("queue after the driver left: %d requests, want only the detached actor's", len(b.s.queue))
	}
	if j := b.s.jobs[b.job.id]; j != b.job || !j.driverGone || j.driver != nil {
		t.Fatalf("job after the driver left: %+v", j)
	}

	// New requests: only a detached actor's is served.
	for _, c := range []struct {
		name                string
		dedicated, detached bool
		code                string
	}{
		{"task", false, false, CodeJobFinished},
		{"non-detached actor", true, false, CodeJobFinished},
		{"detached, not dedicated", false, true, "invalid"},
		{"detached actor", true, true, ""},
	} {
		err := b.s.requestLease(gcs, &wire.Request{ID: 1000}, leaseReq(b.job.id, c.dedicated, c.detached))
		if got := remoteCode(err); got != c.code {
			t.Errorf("%s lease request: %v; want code %q", c.name, err, c.code)
		}
	}
	if len(b.s.queue) != 2 {
		t.Fatalf("%d requests queued, want 2 (detached actors')", len(b.s.queue))
	}

	// The detached requests give up: the worker starting for them goes.
	b.s.queue = b.s.queue[:0]
	b.s.dispatch()
	if !starting.killed {
		t.Error("worker started for a detached actor outlived its request")
	}
	for _, w := range []*workerProc{actor.worker, task.worker, idle, starting} {
		b.s.workerExited(w, nil, false)
	}
	if _, ok := b.s.jobs[b.job.id]; !ok || len(b.job.workers) != 1 {
		t.Fatalf("job known %v with %d workers; want it known with its detached actor's", ok, len(b.job.workers))
	}
	if got := b.cpu(); got != 7 {
		t.Errorf("available CPU %v with the detached actor placed, want 7", got)
	}

	// The detached actor's process crashes; the job lingers for its
	// restart, which the GCS asks for a while later.
	clock.advance(time.Hour)
	b.s.workerExited(detached.worker, errors.New("signal: killed"), false)
	if b.cpu() != 8 || len(b.s.leases) != 0 {
		t.Fatalf("after the crash: available %v, %d leases", b.cpu(), len(b.s.leases))
	}
	clock.advance(59 * time.Second)
	b.s.sweepJobs(clock.Now(), b.s.waitingJobs())
	if _, ok := b.s.jobs[b.job.id]; !ok {
		t.Fatal("job forgotten within its linger")
	}
	if err := b.s.requestLease(gcs, &wire.Request{ID: 1001}, leaseReq(b.job.id, true, true)); err != nil {
		t.Fatalf("restart of the detached actor: %v", err)
	}
	fresh := b.addWorker(true, true) // started for the restart, registered
	restarted := b.grantNew()
	if restarted == nil || restarted.worker != fresh || !fresh.detached || fresh.killed {
		t.Fatalf("restart lease %+v on worker %+v", restarted, fresh)
	}
	if !b.job.idleSince.IsZero() {
		t.Error("a job with a running detached actor counts as idle")
	}

	// Returned (the actor is dead for good): the worker is killed, and
	// the job forgotten a linger after it exited.
	b.s.returnLease(restarted.id, true)
	if !fresh.killed {
		t.Fatal("returning the detached lease did not kill its worker")
	}
	b.s.workerExited(fresh, nil, false)
	idleAt := clock.Now()
	if !b.job.idleSince.Equal(idleAt) {
		t.Fatalf("idle since %v, want %v", b.job.idleSince, idleAt)
	}
	clock.advance(30 * time.Second)
	b.s.sweepJobs(clock.Now(), b.s.waitingJobs())
	if _, ok := b.s.jobs[b.job.id]; !ok {
		t.Fatal("job forgotten within its linger")
	}
	clock.advance(30 * time.Second)
	b.s.sweepJobs(clock.Now(), b.s.waitingJobs())
	if _, ok := b.s.jobs[b.job.id]; ok {
		t.Fatal("job still known a linger after nothing of it ran")
	}
	if err := b.s.requestLease(gcs, &wire.Request{ID: 1002}, leaseReq(b.job.id, true, true)); remoteCode(err) != "unknown_job" {
		t.Errorf("lease request for a forgotten job: %v", err)
	}
}

// A driver leaving with no detached actor ends every worker of its job,
// as before detached actors.
func TestDriverLeftWithoutDetachedActors(t *testing.T) {
	b := newBookkeeping(t, 4, 3)
	driver := pipeConn(t)
	b.job.driver = driver
	driver.SetValue(b.job)
	b.request(b.owner, map[string]float64{CPU: 1}, true, false)
	actor := b.grantNew()
	b.request(driver, map[string]float64{CPU: 1}, false, false)
	task := b.grantNew()
	if actor == nil || task == nil {
		t.Fatal("leases not granted")
	}
	_ = driver.Close()
	b.s.connClosed(driver)
	for _, w := range b.job.workers {
		if !w.killed {
			t.Errorf("worker %s (dedicated %v) not killed", w.id.Short(), w.dedicated)
		}
	}
}

// Only the job's current driver connection ends it: after a second
// connection registered the job (its driver starting over), the first one
// closing changes nothing.
func TestEarlierDriverConnectionClosing(t *testing.T) {
	b := newBookkeeping(t, 4, 2)
	first, second := pipeConn(t), pipeConn(t)
	first.SetValue(b.job)
	second.SetValue(b.job)
	b.job.driver = second
	_ = first.Close()
	b.s.connClosed(first)
	if b.job.driverGone {
		t.Fatal("an earlier driver connection closing ended the job")
	}
	for _, w := range b.job.workers {
		if w.killed {
			t.Fatal("an earlier driver connection closing killed the job's workers")
		}
	}
	_ = second.Close()
	b.s.connClosed(second)
	if !b.job.driverGone {
		t.Fatal("the driver closing did not end the job")
	}
}

// --- over the wire, with real (fake-worker) processes ---

func TestDetachedActorOutlivesDriverOverTheWire(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := startRaylet(t, 2, 1)
	driver := dialRaylet(t, r)
	gcs := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	lease := func(c *wire.Conn, dedicated, detached bool) (*protos.RequestWorkerLeaseReply, error) {
		rep := &protos.RequestWorkerLeaseReply{}
		return rep, c.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, leaseReq(job, dedicated, detached), rep)
	}
	mustLease := func(c *wire.Conn, dedicated, detached bool) *protos.RequestWorkerLeaseReply {
		t.Helper()
		rep, err := lease(c, dedicated, detached)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	pidOf := func(rep *protos.RequestWorkerLeaseReply) int { return int(rep.GetWorker().GetPid()) }
	started := func(rep *protos.RequestWorkerLeaseReply) {
		t.Helper()
		if err := gcs.Call(ctx, protos.Method_NOTIFY_ACTOR_STARTED, &protos.NotifyActorStartedRequest{LeaseId: rep.GetLeaseId()}, &protos.NotifyActorStartedReply{}); err != nil {
			t.Fatal(err)
		}
	}
	keeper := mustLease(gcs, true, true)
	started(keeper)
	temp := mustLease(gcs, true, false)
	started(temp)
	task := mustLease(driver, false, false)

	_ = driver.Close()
	waitFor(t, "the non-detached actor's and the task's workers to exit", func() bool {
		return processGone(pidOf(temp)) && processGone(pidOf(task))
	})
	if processGone(pidOf(keeper)) {
		t.Fatal("the detached actor's worker died with its driver")
	}
	waitFor(t, "only the detached actor's worker to remain", func() bool { return r.NodeInfo().GetNumWorkers() == 1 })

	for _, dedicated := range []bool{false, true} {
		if _, err := lease(gcs, dedicated, false); remoteCode(err) != CodeJobFinished {
			t.Errorf("non-detached lease (dedicated %v) after the driver left: %v; want code %s", dedicated, err, CodeJobFinished)
		}
	}

	// The detached actor's process crashes; its restart gets a new worker
	// of the job's binary although the driver is gone.
	if err := syscall.Kill(pidOf(keeper), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the detached actor's worker to exit", func() bool { return processGone(pidOf(keeper)) })
	restarted := mustLease(gcs, true, true)
	if pidOf(restarted) == pidOf(keeper) || processGone(pidOf(restarted)) {
		t.Fatalf("restarted actor on pid %d (old %d)", pidOf(restarted), pidOf(keeper))
	}
	started(restarted)
	if got := r.NodeInfo().GetAvailable().GetAmounts()[CPU]; got != 2 {
		t.Errorf("available CPU with a running detached actor = %v, want 2", got)
	}
	// Returning its lease ends it.
	if err := gcs.Call(ctx, protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: restarted.GetLeaseId(), DisconnectWorker: true}, &protos.ReturnWorkerLeaseReply{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the returned detached actor's worker to exit", func() bool { return processGone(pidOf(restarted)) })
}
