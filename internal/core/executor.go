package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet"
)

// LogMarker starts the line a worker writes to its stdout and stderr before
// running a different function, so the raylet can attribute the lines that
// follow (the driver prints them as "(Name pid=N) ...").
const LogMarker = raylet.LogMarker

// executor runs the tasks pushed to this worker: in push order per lease,
// one at a time per lease; tasks of different leases (a lease whose task is
// blocked in Get lends its process to another) run concurrently.
type executor struct {
	cw      *Worker
	mu      sync.Mutex
	leases  map[protos.LeaseID]*leaseExec
	running map[protos.TaskID]*runningTask
	// cancelled remembers cancellations of tasks not yet started.
	cancelled map[protos.TaskID]bool
	logMu     sync.Mutex
	lastFunc  string
}

// leaseExec runs one lease's tasks. Normally one runner goroutine drains
// the queue in order; when the running task blocks in Get another runner
// starts, because the tasks pipelined behind it may be the very ones it
// waits for.
type leaseExec struct {
	queue   []queuedTask
	runners int
	// blocked counts runners whose task waits in Get; active counts those
	// running a task that is not blocked.
	blocked int
	active  int
	// lent is set while the lease's CPU is lent back to the raylet because
	// none of its tasks is running.
	lent bool
}

type queuedTask struct {
	conn   *wire.Conn
	req    wire.Request
	msg    *protos.PushTaskRequest
	taskID protos.TaskID
}

type runningTask struct {
	cancel context.CancelFunc
	// attempt, and started (Unix nanoseconds, once the function runs),
	// for its RUNNING event; reported once it is recorded (under e.mu).
	attempt  int32
	started  atomic.Int64
	reported bool
	// cancelled is set when the owner asked to cancel it.
	cancelled     bool
	cancelledFlag atomic.Bool
}

// maxRememberedCancels bounds the cancellations kept for tasks that have
// not arrived: a peer cancelling ids that never come would otherwise grow
// the set for the life of the process.
const maxRememberedCancels = 4096

func newExecutor(cw *Worker) *executor {
	return &executor{cw: cw, leases: map[protos.LeaseID]*leaseExec{}, running: map[protos.TaskID]*runningTask{}, cancelled: map[protos.TaskID]bool{}}
}

func (e *executor) push(c *wire.Conn, req *wire.Request) {
	msg := &protos.PushTaskRequest{}
	if err := unmarshalProto(req.Payload, msg); err != nil {
		e.cw.reject(c, req, malformed(err))
		return
	}
	leaseID, taskID, err := checkPushTask(msg)
	if err != nil {
		e.cw.reject(c, req, err)
		return
	}
	e.mu.Lock()
	le, ok := e.leases[leaseID]
	if !ok {
		le = &leaseExec{}
		e.leases[leaseID] = le
	}
	le.queue = append(le.queue, queuedTask{conn: c, req: *req, msg: msg, taskID: taskID})
	// Start a runner unless one is running a task that is not blocked.
	start := le.runners == le.blocked
	if start {
		le.runners++
	}
	e.mu.Unlock()
	if start {
		go e.drain(leaseID, le)
	}
}

func (e *executor) drain(leaseID protos.LeaseID, le *leaseExec) {
	for {
		e.mu.Lock()
		// A runner whose task resumed from Get while another runner took
		// over steps aside, so the lease runs one task at a time again.
		if len(le.queue) == 0 || le.runners-le.blocked > 1 {
			le.runners--
			if le.runners == 0 && len(le.queue) == 0 {
				delete(e.leases, leaseID)
			}
			e.mu.Unlock()
			return
		}
		qt := le.queue[0]
		le.queue[0] = queuedTask{}
		le.queue = le.queue[1:]
		le.active++
		reclaim := le.lent
		le.lent = false
		e.mu.Unlock()
		if reclaim {
			e.notifyRaylet(leaseID, false)
		}
		reply := e.run(leaseID, qt.taskID, qt.conn, qt.msg)
		_ = qt.conn.Reply(&qt.req, reply)
		e.mu.Lock()
		le.active--
		// The lease's other tasks are all blocked: lend its CPU again.
		lend := le.active == 0 && le.blocked > 0 && !le.lent
		if lend {
			le.lent = true
		}
		e.mu.Unlock()
		if lend {
			e.notifyRaylet(leaseID, true)
		}
	}
}

// setBlocked records that a task of the lease blocked in Get (or
// resumed). The lease's CPU is lent back to the raylet while none of its
// tasks runs (as Ray does, so nested tasks cannot deadlock a node), and
// another runner starts for the tasks queued behind the blocked one: they
// may be the very tasks it waits for.
func (e *executor) setBlocked(leaseID protos.LeaseID, blocked bool) {
	e.mu.Lock()
	le, ok := e.leases[leaseID]
	if !ok {
		e.mu.Unlock()
		return
	}
	start, notify := false, false
	if blocked {
		le.blocked++
		le.active--
		if le.active == 0 && !le.lent {
			le.lent, notify = true, true
		}
		if le.runners == le.blocked && len(le.queue) > 0 {
			le.runners++
			start = true
		}
	} else {
		le.blocked--
		le.active++
		if le.lent {
			le.lent, notify = false, true
		}
	}
	e.mu.Unlock()
	if notify {
		e.notifyRaylet(leaseID, blocked)
	}
	if start {
		go e.drain(leaseID, le)
	}
}

func (e *executor) notifyRaylet(leaseID protos.LeaseID, blocked bool) {
	if e.cw.node().raylet != nil {
		_ = e.cw.node().raylet.Notify(protos.Method_NOTIFY_BLOCKED, &protos.NotifyBlockedRequest{LeaseId: leaseID.Bytes(), Blocked: blocked})
	}
}

// run executes one task (checked by checkPushTask) and builds its reply.
func (e *executor) run(leaseID protos.LeaseID, taskID protos.TaskID, conn *wire.Conn, msg *protos.PushTaskRequest) *protos.PushTaskReply {
	spec := msg.GetSpec()
	fail := func(kind protos.ErrorKind, err error, stack string) *protos.PushTaskReply {
		te := &TaskError{Kind: kind, Function: spec.GetFunction(), TaskID: taskID, Message: err.Error(), Stack: stack, PID: os.Getpid(), NodeID: e.cw.node().id, cause: errors.Unwrap(err)}
		if kind == protos.ErrorKind_ERROR_KIND_TASK {
			te.cause = err
		}
		return &protos.PushTaskReply{Result: &protos.ObjectData{Error: te.toProto()}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.mu.Lock()
	if e.cancelled[taskID] {
		delete(e.cancelled, taskID)
		e.mu.Unlock()
		return fail(protos.ErrorKind_ERROR_KIND_CANCELLED, errors.New("cancelled before it started"), "")
	}
	rt := &runningTask{cancel: cancel, attempt: spec.GetAttempt()}
	e.running[taskID] = rt
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, taskID)
		e.mu.Unlock()
	}()

	f, ok := lookupFunc(spec.GetFunction())
	if !ok || (f.invoke == nil && f.invokeStream == nil) {
		return fail(protos.ErrorKind_ERROR_KIND_UNKNOWN_FUNCTION, fmt.Errorf("%w: %q is not registered in worker binary %s (it registers %s)", ErrUnknownFunction, spec.GetFunction(), executable(), registeredNames()), "")
	}
	if d := spec.GetFunctionDigest(); d != "" && d != e.cw.digest {
		return fail(protos.ErrorKind_ERROR_KIND_BINARY_MISMATCH, fmt.Errorf("%w: caller's function table digest %s, worker %s has %s", ErrBinaryMismatch, d, executable(), e.cw.digest), "")
	}
	// The task's info is in ctx from here on, so that reading an argument
	// that has to wait (its node died) lends the lease's CPU as Get does.
	ti := &taskInfo{taskID: taskID, leaseID: leaseID, function: spec.GetFunction(), attempt: int(spec.GetAttempt())}
	ti.resources = spec.GetResources().GetAmounts()
	ctx = withTaskInfo(ctx, ti)
	pins := &argPins{cw: e.cw, ctx: ctx}
	defer e.cw.taskEnded(pins)
	args, err := f.decodeArgs(spec.GetArgs(), pins.read)
	if err != nil {
		var te *TaskError
		if errors.As(err, &te) {
			// An argument was a failed task's result: fail with it.
			return &protos.PushTaskReply{Result: &protos.ObjectData{Error: te.toProto()}}
		}
		return fail(protos.ErrorKind_ERROR_KIND_ARGUMENT, err, "")
	}
	ensureProcs(ti.resources["CPU"])
	e.announce(spec.GetName())

	started := time.Now()
	rt.started.Store(started.UnixNano())
	var value any
	var stack string
	if f.invokeStream != nil {
		yield := e.cw.yielder(ctx, conn, taskID, spec.GetOwner())
		_, err, stack = protect(func() (any, error) { return nil, f.invokeStream(ctx, args, yield) })
	} else {
		value, err, stack = protect(func() (any, error) { return f.invoke(ctx, args) })
	}
	runMicros := uint64(time.Since(started).Microseconds())
	e.mu.Lock()
	wasCancelled := rt.cancelled
	e.mu.Unlock()
	if wasCancelled {
		return fail(protos.ErrorKind_ERROR_KIND_CANCELLED, errors.New("cancelled while running"), "")
	}
	if err != nil {
		return fail(protos.ErrorKind_ERROR_KIND_TASK, err, stack)
	}
	d, kind, err := e.cw.encodeResult(ctx, protos.ObjectIDFor(taskID, 1), spec.GetOwner(), spec.GetFunction(), value)
	if err != nil {
		return fail(kind, err, "")
	}
	return &protos.PushTaskReply{Result: d, RunMicros: runMicros}
}

// ensureProcs lets a task granted n CPUs use n threads: workers start with
// GOMAXPROCS=1 (see the raylet) and only ever raise it, since changing it
// stops the world. More threads than the machine has CPUs would gain
// nothing, whatever the task says it was granted.
func ensureProcs(n float64) {
	if !(n > 1) { // also NaN
		return
	}
	want := runtime.NumCPU()
	if n < float64(want) {
		want = int(math.Ceil(n))
	}
	if want > runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(want)
	}
}

// track registers a running call (an actor method) so CANCEL_TASK finds it.
// A call cancelled before it started comes back already cancelled.
func (e *executor) track(taskID protos.TaskID, attempt int32, cancel context.CancelFunc) *runningTask {
	rt := &runningTask{cancel: cancel, attempt: attempt}
	e.mu.Lock()
	e.running[taskID] = rt
	if e.cancelled[taskID] {
		delete(e.cancelled, taskID)
		rt.cancelled = true
		rt.cancelledFlag.Store(true)
		cancel()
	}
	e.mu.Unlock()
	return rt
}

func (e *executor) untrack(taskID protos.TaskID) {
	e.mu.Lock()
	delete(e.running, taskID)
	e.mu.Unlock()
}

func (rt *runningTask) wasCancelled() bool { return rt.cancelledFlag.Load() }

// announce writes the log marker when the function changes.
func (e *executor) announce(name string) {
	if !e.cw.isWorker {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if name == e.lastFunc {
		return
	}
	e.lastFunc = name
	fmt.Fprintf(os.Stdout, "%s%s\n", LogMarker, name)
	fmt.Fprintf(os.Stderr, "%s%s\n", LogMarker, name)
}

func (e *executor) cancel(c *wire.Conn, req *wire.Request) {
	var m protos.CancelTaskRequest
	if err := unmarshalProto(req.Payload, &m); err != nil {
		e.cw.reject(c, req, malformed(err))
		return
	}
	taskID, err := parseID("task_id", m.GetTaskId())
	if err != nil {
		e.cw.reject(c, req, err)
		return
	}
	e.mu.Lock()
	rt, running := e.running[taskID]
	if running {
		rt.cancelled = true
		rt.cancelledFlag.Store(true)
	} else {
		e.rememberCancelLocked(taskID)
	}
	e.mu.Unlock()
	if m.GetRecursive() {
		e.cw.sub.cancelChildren(taskID, m.GetForce())
	}
	_ = c.Reply(req, &protos.CancelTaskReply{Found: running})
	if running {
		if m.GetForce() && e.cw.isWorker {
			e.cw.log.Warn().Str("task", taskID.Short()).Msg("force-cancelled: worker exits")
			os.Exit(1)
		}
		rt.cancel()
	}
}

// rememberCancelLocked records the cancellation of a task that has not
// arrived, forgetting an arbitrary older one if too many are kept.
func (e *executor) rememberCancelLocked(taskID protos.TaskID) {
	if len(e.cancelled) >= maxRememberedCancels {
		for id := range e.cancelled {
			delete(e.cancelled, id)
			break
		}
	}
	e.cancelled[taskID] = true
}

func registeredNames() string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.funcs))
	for n := range registry.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 20 {
		return fmt.Sprintf("%d functions: %v ...", len(names), names[:20])
	}
	return fmt.Sprintf("%v", names)
}

func executable() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}
