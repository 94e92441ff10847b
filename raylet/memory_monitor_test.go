package raylet

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/protos"
)

// TestMemoryMonitorOverTheWire runs the monitor of a raylet whose memory
// reading the test controls, over real (fake) worker processes: it kills
// the newest task of the caller with most tasks first (retried), then that
// caller's last task (not retried), and the actor only when no task is
// left; each owner learns why with GET_WORKER_FAILURE_CAUSE.
func TestMemoryMonitorOverTheWire(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The memory is high until the monitor made target kills.
	var target atomic.Uint64
	var r *Raylet
	r, err = New(Config{
		Credentials:           testCreds,
		SessionDir:            t.TempDir(),
		Resources:             res(t, map[string]float64{CPU: 3}),
		ObjectStoreMemory:     16 << 20,
		MaxWorkers:            3,
		Logger:                zerolog.Nop(),
		ReportInterval:        time.Hour,
		MemoryUsageThreshold:  0.5,
		MemoryMonitorInterval: 5 * time.Millisecond,
		ReadMemory: func() (MemoryUsage, error) {
			if r.monitorKills.Load() < target.Load() {
				return MemoryUsage{Used: 900 << 20, Total: 1000 << 20, Source: "test"}, nil
			}
			return MemoryUsage{Used: 100 << 20, Total: 1000 << 20, Source: "test"}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	driver, gcs := dialRaylet(t, r), dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	actor := &protos.RequestWorkerLeaseReply{}
	if err := gcs.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Function: "Counter", Dedicated: true,
		Resources: &protos.Resources{Amounts: map[string]float64{CPU: 1}}, RunningResources: &protos.Resources{}}, actor); err != nil {
		t.Fatal(err)
	}
	if err := gcs.Call(ctx, protos.Method_NOTIFY_ACTOR_STARTED, &protos.NotifyActorStartedRequest{LeaseId: actor.GetLeaseId()}, &protos.NotifyActorStartedReply{}); err != nil {
		t.Fatal(err)
	}
	task := func() *protos.RequestWorkerLeaseReply {
		t.Helper()
		rep := &protos.RequestWorkerLeaseReply{}
		if err := driver.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{JobId: job.Bytes(), Function: "Hog", Retriable: true,
			Resources: &protos.Resources{Amounts: map[string]float64{CPU: 1}}}, rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	older, newer := task(), task()
	cause := func(w *protos.Address) *protos.GetWorkerFailureCauseReply {
		t.Helper()
		rep := &protos.GetWorkerFailureCauseReply{}
		if err := driver.Call(ctx, protos.Method_GET_WORKER_FAILURE_CAUSE, &protos.GetWorkerFailureCauseRequest{WorkerId: w.GetWorkerId()}, rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	pid := func(l *protos.RequestWorkerLeaseReply) int { return int(l.GetWorker().GetPid()) }
	if c := cause(&protos.Address{WorkerId: protos.NewUniqueID().Bytes()}); c.GetKind() != protos.ErrorKind_ERROR_KIND_UNSPECIFIED {
		t.Fatalf("cause of an unknown worker: %v", c)
	}

	// Under pressure until one worker is killed: the newer task's.
	target.Store(1)
	waitFor(t, "a worker killed", func() bool { return processGone(pid(newer)) || processGone(pid(older)) })
	if processGone(pid(older)) || processGone(pid(actor)) {
		t.Fatal("the monitor killed the older task or the actor before the newer task")
	}
	c := cause(newer.GetWorker())
	if c.GetKind() != protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY || !c.GetMemoryMonitor() || c.GetFailImmediately() ||
		!strings.Contains(c.GetMessage(), "used 900.0 MiB of 1000.0 MiB (0.90 > threshold 0.50)") {
		t.Fatalf("cause of the newer task's death: %v", c)
	}

	// Again: the caller's last task, which is not to be retried.
	target.Store(2)
	waitFor(t, "the older task's worker killed", func() bool { return processGone(pid(older)) })
	if processGone(pid(actor)) {
		t.Fatal("the monitor killed the actor with a task left")
	}
	if c := cause(older.GetWorker()); c.GetKind() != protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY || !c.GetFailImmediately() {
		t.Fatalf("cause of the last task's death: %v", c)
	}

	// No task left: the actor.
	target.Store(3)
	waitFor(t, "the actor's worker killed", func() bool { return processGone(pid(actor)) })
	if c := cause(actor.GetWorker()); c.GetKind() != protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY || !strings.Contains(c.GetMessage(), "an actor's") {
		t.Fatalf("cause of the actor's death: %v", c)
	}
	if n := r.monitorKills.Load(); n != 3 {
		t.Fatalf("monitor kills = %d, want 3", n)
	}
}

// TestMemoryPressureIgnoresStaleReadings: readings queued while a victim
// was dying, taken before it had exited, kill no one; the first one taken
// after is heard.
func TestMemoryPressureIgnoresStaleReadings(t *testing.T) {
	r := &Raylet{cfg: Config{Logger: zerolog.Nop(), MemoryUsageThreshold: 0.5}}
	s := &state{r: r, now: time.Now}
	exited := make(chan struct{})
	s.oomVictim = &workerProc{exited: exited}
	high := MemoryUsage{Used: 900, Total: 1000}
	for range 3 { // readings 1..3, while the victim dies
		r.memReadings.Add(1)
	}
	s.memoryPressure(high, 1)
	if s.oomVictim == nil {
		t.Fatal("the victim was forgotten before it exited")
	}
	close(exited)
	s.memoryPressure(high, 2) // notices the exit, kills no one
	if s.oomVictim != nil || s.oomFreshFrom != 4 {
		t.Fatalf("after the exit: victim %v, fresh from %d (want 4)", s.oomVictim, s.oomFreshFrom)
	}
	s.memoryPressure(high, 3) // stale: taken before the exit was seen
	if !s.lastNoVictim.IsZero() {
		t.Fatal("a stale reading looked for a victim")
	}
	s.memoryPressure(high, 4) // fresh: looks (and finds no worker to kill)
	if s.lastNoVictim.IsZero() {
		t.Fatal("a fresh reading did not look for a victim")
	}
}
