package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/taskevents"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet"
)

// Task submission follows Ray's direct-call design: the owner asks its
// raylet for a worker lease per resource shape, pushes tasks straight to the
// leased worker (pipelined), keeps the lease while such tasks queue, and
// returns it once it has been idle for leaseIdleTimeout.
const (
	// maxInflightPerLease bounds how many tasks are pushed ahead to one
	// leased worker. Only functions known to be short are pipelined (see
	// fastFunction): a task queued behind a long one on the same worker
	// would wait for it while another worker could run it.
	maxInflightPerLease = 64
	// pipelineBelow is the run time under which a function counts as short.
	pipelineBelow = time.Millisecond
	// maxLeaseRequests bounds outstanding lease requests per shape.
	maxLeaseRequests = 8
	// leaseIdleTimeout keeps a lease briefly after its queue empties, so a
	// caller submitting one task at a time does not pay for a new lease
	// each time.
	leaseIdleTimeout = 20 * time.Millisecond
)

type pendingTask struct {
	spec        *protos.TaskSpec
	key         string
	returnID    protos.ObjectID
	queue       *schedQueue
	retriesLeft int
	retryOn     func(error) bool
	// argRefs are objects this task keeps alive while pending.
	argRefs []protos.ObjectID
	// resolving is set while ref arguments are awaited.
	resolving bool
	lease     *lease
	cancelled bool
	force     bool
	finished  bool
	recursive bool
	// pushedSlow records that the task was not known to be short when it
	// was pushed, so nothing is pipelined behind it.
	pushedSlow bool
	// pushSeq orders the pushes of the submitter: on a worker that died,
	// the task pushed first is the one that was running.
	pushSeq uint64
	// notSent is set when the push never reached the worker.
	notSent  bool
	strategy *protos.SchedulingStrategy
	// env is the runtime env the task's worker must have (nil: the job's).
	env *protos.RuntimeEnv
	// runMicros is how long the attempt ran, from its reply, and ranOn
	// the worker it ran on.
	runMicros uint64
	ranOn     *protos.Address
	// event is the attempt's first task event (task_events.go).
	event taskevents.Handle
	// parked: the task's worker died and the task is in neither a queue
	// nor a lease, while its owner asks the raylet why the worker died or
	// waits out the backoff before an OOM retry (failure path only).
	parked bool
}

type schedQueue struct {
	key string
	// retriable: the queue's tasks may be retried (MaxRetries != 0); the
	// raylet's memory monitor kills such tasks' workers first. Tasks that
	// may not be retried have queues of their own (notRetriableKey).
	retriable  bool
	resources  *protos.Resources
	strategy   *protos.SchedulingStrategy
	env        *protos.RuntimeEnv
	function   string
	tasks      []*pendingTask
	leases     []*lease
	requesting int
}

type lease struct {
	id    protos.LeaseID
	queue *schedQueue
	// raylet granted the lease: the node's own, or another node's after a
	// spillback. The lease goes back to it.
	raylet   *wire.Conn
	conn     *wire.Conn
	worker   *protos.Address
	inflight map[protos.TaskID]*pendingTask
	// slow counts in-flight tasks not known to be short.
	slow int
	// idle fires leaseIdleTimeout after the lease ran out of work; one
	// timer per lease, re-armed, since this is on every task's path.
	idle      *time.Timer
	idleArmed bool
	idleSince time.Time
	done      bool
}

// funcStat is a moving average of a function's run time.
type funcStat struct {
	avgMicros float64
}

type submitter struct {
	cw     *Worker
	mu     sync.Mutex
	queues map[string]*schedQueue
	tasks  map[protos.TaskID]*pendingTask
	// children lists tasks submitted from within a running task, for
	// recursive cancellation.
	children map[protos.TaskID][]protos.TaskID
	stats    map[string]*funcStat
	closed   bool
	pushSeq  uint64
}

func newSubmitter(cw *Worker) *submitter {
	return &submitter{cw: cw, queues: map[string]*schedQueue{}, tasks: map[protos.TaskID]*pendingTask{}, children: map[protos.TaskID][]protos.TaskID{}, stats: map[string]*funcStat{}}
}

// SubmitTask builds a task from a call and starts it on its way: arguments
// are encoded (refs resolved first), then the task waits for a lease.
func (cw *Worker) SubmitTask(ctx context.Context, fn string, args []Arg, opts CallOptions) (ObjectRef, error) {
	if cw.closed.Load() {
		return ObjectRef{}, ErrNotInitialized
	}
	res, key, err := opts.resourceShape()
	if err != nil {
		return ObjectRef{}, fmt.Errorf("%w: task %s: %v", ErrArgument, fn, err)
	}
	env, envKey, err := opts.runtimeEnv(ctx, cw)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("task %s: %w", fn, err)
	}
	key += envKey
	taskID := protos.NewUniqueID()
	name := opts.name
	if name == "" {
		name = fn
	}
	spec := &protos.TaskSpec{
		TaskId:         taskID.Bytes(),
		JobId:          cw.jobID.Bytes(),
		Function:       fn,
		Resources:      res,
		Owner:          cw.node().addr,
		Name:           name,
		FunctionDigest: cw.digest,
	}
	var parent protos.TaskID
	if ti := taskInfoFrom(ctx); ti != nil {
		parent = ti.taskID
		spec.ParentTaskId = parent.Bytes()
	}
	if opts.maxRetries == 0 {
		key += notRetriableKey
	}
	t := &pendingTask{spec: spec, key: key, returnID: protos.ObjectIDFor(taskID, 1), retriesLeft: opts.maxRetries, retryOn: opts.retryOn, strategy: opts.strategy.proto(), env: env}
	spec.Args, t.argRefs, err = cw.buildArgs(ctx, fn, args)
	if err != nil {
		return ObjectRef{}, err
	}
	cw.objects.addOwned(t.returnID)
	ref := newObjectRef(cw, t.returnID, cw.node().addr)
	if opts.stream {
		cw.streams.open(cw, taskID)
	}
	s := cw.sub
	s.mu.Lock()
	s.tasks[taskID] = t
	if !parent.IsZero() {
		s.children[parent] = append(s.children[parent], taskID)
	}
	s.mu.Unlock()
	s.resolve(t)
	return ref, nil
}

// resolve waits for the task's ref arguments, then queues it.
func (s *submitter) resolve(t *pendingTask) {
	waits := len(t.argRefs) > 0
	first := protos.TaskState_SUBMITTED
	if waits {
		first = protos.TaskState_PENDING_ARGS
	}
	event := s.cw.taskSubmitted(t.spec, first)
	s.mu.Lock()
	t.resolving, t.event = true, event
	s.mu.Unlock()
	s.cw.resolveArgs(t.spec.GetArgs(), func(depErr *TaskError) {
		s.mu.Lock()
		t.resolving = false
		s.mu.Unlock()
		if depErr != nil {
			s.finish(t, nil, depErr)
			return
		}
		if waits {
			s.cw.taskState(t.spec.GetTaskId(), t.spec.GetAttempt(), protos.TaskState_SUBMITTED)
		}
		s.enqueue(t)
	})
}

func (s *submitter) enqueue(t *pendingTask) {
	k := t.key
	s.mu.Lock()
	if t.cancelled || s.closed {
		s.mu.Unlock()
		s.finish(t, nil, s.cancelErr(t))
		return
	}
	q, ok := s.queues[k]
	if !ok {
		q = &schedQueue{key: k, resources: t.spec.Resources, function: t.spec.Function, strategy: t.strategy, env: t.env, retriable: !strings.HasSuffix(k, notRetriableKey)}
		s.queues[k] = q
	}
	t.queue = q
	q.tasks = append(q.tasks, t)
	s.pumpLocked(q)
	s.mu.Unlock()
}

// pumpLocked pushes queued tasks to leases with room and asks for more
// leases when tasks still wait.
func (s *submitter) pumpLocked(q *schedQueue) {
	for len(q.tasks) > 0 {
		t := q.tasks[0]
		fast := s.fastFunction(t.spec.Function)
		var best *lease
		for _, l := range q.leases {
			if l.done {
				continue
			}
			if len(l.inflight) == 0 {
				best = l
				break
			}
			if fast && l.slow == 0 && len(l.inflight) < maxInflightPerLease && (best == nil || len(l.inflight) < len(best.inflight)) {
				best = l
			}
		}
		if best == nil {
			break
		}
		q.tasks[0] = nil
		q.tasks = q.tasks[1:]
		t.pushedSlow = !fast
		s.pushLocked(best, t)
	}
	if want := min(len(q.tasks), maxLeaseRequests); q.requesting < want {
		for ; q.requesting < want; q.requesting++ {
			s.requestLease(q)
		}
	}
	for _, l := range q.leases {
		if len(l.inflight) == 0 && !l.done && !l.idleArmed {
			s.armIdleLocked(l, leaseIdleTimeout)
		}
	}
}

// fastFunction reports whether fn is known to run briefly enough to be
// pipelined behind other tasks.
func (s *submitter) fastFunction(fn string) bool {
	st, ok := s.stats[fn]
	return ok && st.avgMicros < float64(pipelineBelow.Microseconds())
}

func (s *submitter) recordRun(fn string, micros uint64) {
	st, ok := s.stats[fn]
	if !ok {
		s.stats[fn] = &funcStat{avgMicros: float64(micros)}
		return
	}
	st.avgMicros = 0.8*st.avgMicros + 0.2*float64(micros)
}

func (s *submitter) pushLocked(l *lease, t *pendingTask) {
	l.idleArmed = false
	taskID := protos.MustUniqueID(t.spec.TaskId)
	l.inflight[taskID] = t
	if t.pushedSlow {
		l.slow++
	}
	t.lease = l
	s.pushSeq++
	t.pushSeq = s.pushSeq
	t.notSent = false
	err := l.conn.Go(protos.Method_PUSH_TASK, &protos.PushTaskRequest{Spec: t.spec, LeaseId: l.id.Bytes()}, func(payload []byte, err error) {
		s.onReply(l, t, payload, err)
	})
	if err != nil {
		// The connection was already closed, so the task never reached
		// the worker: it goes back to the queue without using a retry,
		// and the lease (like every lease on that worker) is dropped.
		t.notSent = true
		go s.onReply(l, t, nil, err)
	}
}

func (s *submitter) requestLease(q *schedQueue) {
	req := &protos.RequestWorkerLeaseRequest{JobId: s.cw.jobID.Bytes(), Resources: q.resources, Function: q.function, Strategy: q.strategy, Retriable: q.retriable, RuntimeEnv: q.env}
	if len(q.tasks) > 0 {
		req.PreferredNodeId = argsNode(q.tasks[0].spec.GetArgs(), s.cw.node().id)
	}
	s.askRaylet(q, s.cw.node().raylet, req)
}

// spillRetryDelay is how long a lease request waits before going back to
// the local raylet after the node it was spilled to could not be reached
// (the node died; the cluster view drops it shortly).
const spillRetryDelay = 100 * time.Millisecond

// askRaylet sends a lease request to raylet (the node's own, or another
// node's after a spillback) and follows the answer: a grant, a spillback to
// another node, or an error.
func (s *submitter) askRaylet(q *schedQueue, raylet *wire.Conn, req *protos.RequestWorkerLeaseRequest) {
	b := s.cw.node()
	local := raylet == b.raylet
	retryLocal := func() {
		time.AfterFunc(spillRetryDelay, func() {
			r := proto.CloneOf(req)
			r.NoSpillback = false
			s.askRaylet(q, s.cw.node().raylet, r)
		})
	}
	err := raylet.Go(protos.Method_REQUEST_WORKER_LEASE, req, func(payload []byte, err error) {
		var reply protos.RequestWorkerLeaseReply
		if err == nil {
			err = unmarshalProto(payload, &reply)
		}
		if err != nil {
			if !local && isConnError(err) {
				retryLocal()
				return
			}
			if isConnError(err) {
				// This machine's raylet is gone: a driver waits for the
				// next one (the head restarting).
				s.cw.afterRebind(b, func(next *wire.Conn) { s.askRaylet(q, next, req) }, func() { s.leaseFailed(q, err) })
				return
			}
			s.leaseFailed(q, err)
			return
		}
		if at := reply.GetRetryAt(); at != nil {
			s.cw.withPeer(at.GetRayletTcpEndpoint(), func(c *wire.Conn, err error) {
				if err != nil {
					retryLocal()
					return
				}
				r := proto.CloneOf(req)
				r.NoSpillback = true
				s.askRaylet(q, c, r)
			})
			return
		}
		leaseID := protos.MustUniqueID(reply.GetLeaseId())
		s.cw.withPeerAt(reply.GetWorker(), func(c *wire.Conn, err error) {
			if err != nil {
				// The worker died between grant and dial: give the lease
				// back and ask again.
				s.returnLease(raylet, leaseID, true)
				s.leaseLost(q)
				return
			}
			s.leaseGranted(q, &lease{id: leaseID, queue: q, raylet: raylet, conn: c, worker: reply.GetWorker(), inflight: map[protos.TaskID]*pendingTask{}})
		})
	})
	if err != nil {
		if !local {
			retryLocal()
			return
		}
		s.cw.afterRebind(b, func(next *wire.Conn) { s.askRaylet(q, next, req) }, func() { s.leaseFailed(q, err) })
	}
}

// argsNode is the node other than local holding the most bytes of args in
// its store, or nil if local holds as much or no argument is stored.
func argsNode(args []*protos.TaskArg, local protos.NodeID) []byte {
	var bytes map[protos.NodeID]uint64
	for _, a := range args {
		v := a.GetValue()
		if !v.GetInStore() {
			continue
		}
		if bytes == nil {
			bytes = map[protos.NodeID]uint64{}
		}
		bytes[protos.MustUniqueID(v.GetNodeId())] += v.GetSize()
	}
	var best protos.NodeID
	var most uint64
	for n, b := range bytes {
		if b > most || (b == most && string(n[:]) < string(best[:])) {
			best, most = n, b
		}
	}
	if most == 0 || best == local || bytes[local] >= most {
		return nil
	}
	return best.Bytes()
}

// isConnError reports a failure of the connection rather than an answer.
func isConnError(err error) bool {
	var re *wire.RemoteError
	return !errors.As(err, &re)
}

// leaseLost re-runs the queue's bookkeeping after a lease that could not be
// used.
func (s *submitter) leaseLost(q *schedQueue) {
	s.mu.Lock()
	q.requesting--
	if !s.closed {
		s.pumpLocked(q)
	}
	s.mu.Unlock()
}

func (s *submitter) leaseGranted(q *schedQueue, l *lease) {
	s.mu.Lock()
	q.requesting--
	if s.closed || len(q.tasks) == 0 {
		s.mu.Unlock()
		s.returnLease(l.raylet, l.id, false)
		return
	}
	q.leases = append(q.leases, l)
	s.pumpLocked(q)
	s.mu.Unlock()
}

// leaseFailed fails the queued tasks when the raylet refuses a lease for
// good (e.g. the worker binary does not match the driver's) or is gone.
func (s *submitter) leaseFailed(q *schedQueue, err error) {
	kind := protos.ErrorKind_ERROR_KIND_SYSTEM
	var re *wire.RemoteError
	if errors.As(err, &re) {
		switch re.Code {
		case "binary_mismatch":
			kind = protos.ErrorKind_ERROR_KIND_BINARY_MISMATCH
		case "unschedulable":
			kind = protos.ErrorKind_ERROR_KIND_UNSCHEDULABLE
		case raylet.CodePlatformMismatch, raylet.CodeRuntimeEnvFailed:
			kind = protos.ErrorKind_ERROR_KIND_RUNTIME_ENV
		}
	}
	s.mu.Lock()
	q.requesting--
	failed := q.tasks
	q.tasks = nil
	s.mu.Unlock()
	for _, t := range failed {
		s.finish(t, nil, systemError(kind, t.spec.Function, protos.MustUniqueID(t.spec.TaskId), "no worker lease: %v", err))
	}
}

func (s *submitter) armIdleLocked(l *lease, d time.Duration) {
	l.idleArmed = true
	l.idleSince = time.Now()
	if l.idle == nil {
		l.idle = time.AfterFunc(d, func() { s.idleExpired(l) })
		return
	}
	l.idle.Reset(d)
}

func (s *submitter) idleExpired(l *lease) {
	s.mu.Lock()
	if l.done || len(l.inflight) > 0 || !l.idleArmed {
		s.mu.Unlock()
		return
	}
	// The timer is not stopped when work arrives, so it may fire for an
	// earlier idle spell: wait out the current one.
	if left := leaseIdleTimeout - time.Since(l.idleSince); left > 0 {
		l.idle.Reset(left)
		s.mu.Unlock()
		return
	}
	l.idleArmed = false
	if len(l.queue.tasks) > 0 {
		s.pumpLocked(l.queue)
		s.mu.Unlock()
		return
	}
	s.dropLeaseLocked(l)
	s.mu.Unlock()
	s.returnLease(l.raylet, l.id, false)
}

func (s *submitter) dropLeaseLocked(l *lease) {
	l.done = true
	l.idleArmed = false
	if l.idle != nil {
		l.idle.Stop()
	}
	q := l.queue
	for i, x := range q.leases {
		if x == l {
			q.leases = append(q.leases[:i], q.leases[i+1:]...)
			break
		}
	}
}

func (s *submitter) returnLease(raylet *wire.Conn, id protos.LeaseID, disconnect bool) {
	if raylet == nil {
		return
	}
	_ = raylet.Go(protos.Method_RETURN_WORKER_LEASE, &protos.ReturnWorkerLeaseRequest{LeaseId: id.Bytes(), DisconnectWorker: disconnect}, func([]byte, error) {})
}

// onReply handles a pushed task's outcome. It runs on the worker
// connection's reader goroutine.
func (s *submitter) onReply(l *lease, t *pendingTask, payload []byte, err error) {
	taskID := protos.MustUniqueID(t.spec.TaskId)
	var reply protos.PushTaskReply
	if err == nil {
		if uerr := unmarshalProto(payload, &reply); uerr != nil {
			err = fmt.Errorf("malformed task reply: %w", uerr)
		}
	}
	s.mu.Lock()
	if _, ok := l.inflight[taskID]; ok {
		delete(l.inflight, taskID)
		if t.pushedSlow {
			l.slow--
		}
	} else if err != nil {
		// The lease's connection failed and the task was already dealt
		// with, with the lease's other tasks, by the first of their
		// callbacks: it may be queued or running elsewhere by now.
		s.mu.Unlock()
		return
	}
	if err == nil {
		s.recordRun(t.spec.Function, reply.GetRunMicros())
	}
	var crashed []*pendingTask
	if err != nil && !l.done {
		// The worker is gone (or the connection broke): every task in
		// flight on this lease shares the fate of this one, and the other
		// leases on the same worker are dropped before anything is pushed
		// to them.
		for _, q := range s.queues {
			for _, o := range append([]*lease(nil), q.leases...) {
				if o.conn == l.conn && o != l && len(o.inflight) == 0 {
					s.dropLeaseLocked(o)
					go s.returnLease(o.raylet, o.id, true)
				}
			}
		}
		s.dropLeaseLocked(l)
		for id, o := range l.inflight {
			delete(l.inflight, id)
			crashed = append(crashed, o)
		}
		l.slow = 0
		go s.returnLease(l.raylet, l.id, true)
	}
	var retry []*pendingTask
	var done []func()
	var askCause *pendingTask
	lost := append([]*pendingTask{t}, crashed...)
	ran := ranOnDeadWorker(lost)
	for _, x := range lost {
		x := x
		if x.finished {
			continue
		}
		if err != nil {
			if x.cancelled {
				done = append(done, func() { s.finish(x, nil, s.cancelErr(x)) })
				continue
			}
			if x != ran {
				// Queued behind the running task, it never started: it
				// goes back to the queue without using a retry (Ray
				// counts attempts that ran).
				retry = append(retry, x)
				continue
			}
			// It ran when the worker died: whether and when it runs
			// again depends on why the worker died, which the raylet
			// that granted the lease knows (workerLost).
			x.lease, x.parked = nil, true
			askCause = x
			continue
		}
		res := reply.GetResult()
		if e := res.GetError(); e != nil {
			terr := taskErrorFromProto(e)
			if x.cancelled {
				terr = s.cancelErr(x)
			} else if x.retryOn != nil && x.retriesLeft != 0 && terr.Kind == protos.ErrorKind_ERROR_KIND_TASK && x.retryOn(terr) {
				if x.retriesLeft > 0 {
					x.retriesLeft--
				}
				s.cw.taskAttemptEnded(x.event, x.spec.GetTaskId(), x.spec.GetAttempt(), reply.GetRunMicros(), l.worker, terr)
				x.spec.Attempt++
				x.event = s.cw.taskSubmitted(x.spec, protos.TaskState_SUBMITTED)
				retry = append(retry, x)
				continue
			}
			x.runMicros, x.ranOn = reply.GetRunMicros(), l.worker
			done = append(done, func() { s.finish(x, nil, terr) })
			continue
		}
		if x.cancelled {
			done = append(done, func() { s.finish(x, nil, s.cancelErr(x)) })
			continue
		}
		x.runMicros, x.ranOn = reply.GetRunMicros(), l.worker
		done = append(done, func() { s.finish(x, res, nil) })
	}
	for _, x := range retry {
		x.lease = nil
		x.queue.tasks = append(x.queue.tasks, x)
	}
	s.pumpLocked(l.queue)
	s.mu.Unlock()
	for _, f := range done {
		f()
	}
	if askCause != nil {
		s.askFailureCause(l, askCause, err)
	}
}

// notRetriableKey ends the queue key of tasks that may not be retried
// (MaxRetries 0), so their leases tell the raylet so.
const notRetriableKey = "|no-retry"

// causeTimeout bounds how long a task whose worker died waits for the
// raylet's word on why (the raylet answers within about 2 s).
const causeTimeout = 5 * time.Second

// OOM retries back off as Ray's: oomRetryBase doubled with each attempt,
// at most oomRetryMax (Ray's task_oom_retry_delay_base_ms, capped at 60 s).
const (
	oomRetryBase = time.Second
	oomRetryMax  = 60 * time.Second
)

// oomRetryDelay is how long a task killed for want of memory in attempt
// (0 for the first) waits before it runs again.
func oomRetryDelay(attempt int32) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	if attempt >= 6 {
		return oomRetryMax
	}
	return min(oomRetryMax, oomRetryBase<<attempt)
}

// askFailureCause asks the raylet that granted l why its worker died (Ray's
// GetWorkerFailureCause), then settles x, the task that was running on it.
// Only a failed worker connection leads here.
func (s *submitter) askFailureCause(l *lease, x *pendingTask, connErr error) {
	var once sync.Once
	settle := func(cause *protos.GetWorkerFailureCauseReply) {
		once.Do(func() { s.workerLost(l, x, connErr, cause) })
	}
	if l.raylet == nil || len(l.worker.GetWorkerId()) == 0 {
		settle(nil)
		return
	}
	timer := time.AfterFunc(causeTimeout, func() { settle(nil) })
	err := l.raylet.Go(protos.Method_GET_WORKER_FAILURE_CAUSE, &protos.GetWorkerFailureCauseRequest{WorkerId: l.worker.GetWorkerId()}, func(payload []byte, err error) {
		timer.Stop()
		var reply protos.GetWorkerFailureCauseReply
		if err != nil || unmarshalProto(payload, &reply) != nil {
			// An older raylet, or one that is gone: no word.
			settle(nil)
			return
		}
		settle(&reply)
	})
	if err != nil {
		timer.Stop()
		go settle(nil)
	}
}

// workerLost retries or fails x, which was running when its worker died,
// by cause (nil or empty when the raylet could not tell), as Ray's task
// manager: the memory monitor's kills are retried apart from MaxRetries
// and without limit, after a backoff, unless the task may not be retried
// or the monitor killed its caller's last task on the node (then it fails
// with ErrOutOfMemory); the kernel's OOM kills use the task's retries,
// after the same backoff; other deaths use them at once.
func (s *submitter) workerLost(l *lease, x *pendingTask, connErr error, cause *protos.GetWorkerFailureCauseReply) {
	oom := cause.GetKind() == protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY
	s.mu.Lock()
	x.parked = false
	if x.finished {
		s.mu.Unlock()
		return
	}
	if x.cancelled {
		s.mu.Unlock()
		s.finish(x, nil, s.cancelErr(x))
		return
	}
	retry, delay := false, time.Duration(0)
	switch {
	case oom && cause.GetMemoryMonitor():
		retry = x.queue.retriable && !cause.GetFailImmediately()
		delay = oomRetryDelay(x.spec.Attempt)
	case x.retriesLeft != 0:
		retry = true
		if x.retriesLeft > 0 {
			x.retriesLeft--
		}
		if oom {
			delay = oomRetryDelay(x.spec.Attempt)
		}
	}
	if retry && !s.closed {
		attempt := x.spec.Attempt
		s.cw.taskAttemptEnded(x.event, x.spec.GetTaskId(), attempt, 0, l.worker, &TaskError{Kind: cmp.Or(cause.GetKind(), protos.ErrorKind_ERROR_KIND_WORKER_CRASHED),
			Message: cmp.Or(cause.GetMessage(), fmt.Sprintf("the worker process died while running the task: %v", connErr))})
		x.spec.Attempt++
		x.event = s.cw.taskSubmitted(x.spec, protos.TaskState_SUBMITTED)
		if delay == 0 {
			x.queue.tasks = append(x.queue.tasks, x)
			s.pumpLocked(x.queue)
			s.mu.Unlock()
			return
		}
		x.parked = true
		s.mu.Unlock()
		s.cw.log.Warn().Str("function", x.spec.Function).Int32("attempt", attempt+1).Dur("backoff", delay).Str("cause", cause.GetMessage()).
			Msg("task's worker was killed for want of memory; retrying it after a backoff")
		time.AfterFunc(delay, func() { s.unpark(x) })
		return
	}
	closed := s.closed
	s.mu.Unlock()
	taskID := protos.MustUniqueID(x.spec.TaskId)
	var terr *TaskError
	switch {
	case closed && retry:
		terr = systemError(protos.ErrorKind_ERROR_KIND_SYSTEM, x.spec.Function, taskID, "goray shut down before the task ran again")
	case oom:
		terr = &TaskError{Kind: protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY, Function: x.spec.Function, TaskID: taskID, PID: int(l.worker.GetPid()),
			NodeID: protos.MustUniqueID(l.worker.GetNodeId()), Message: fmt.Sprintf("%s (attempt %d)", cause.GetMessage(), x.spec.Attempt+1)}
	default:
		msg := fmt.Sprintf("the worker process died while running the task (attempt %d): %v", x.spec.Attempt+1, connErr)
		if m := cause.GetMessage(); m != "" {
			msg += "; " + m
		}
		terr = &TaskError{Kind: protos.ErrorKind_ERROR_KIND_WORKER_CRASHED, Function: x.spec.Function, TaskID: taskID, PID: int(l.worker.GetPid()), Message: msg}
	}
	s.finish(x, nil, terr)
}

// unpark queues a task again after its OOM retry backoff.
func (s *submitter) unpark(x *pendingTask) {
	s.mu.Lock()
	x.parked = false
	switch {
	case x.finished:
		s.mu.Unlock()
	case s.closed:
		s.mu.Unlock()
		s.finish(x, nil, systemError(protos.ErrorKind_ERROR_KIND_SYSTEM, x.spec.Function, protos.MustUniqueID(x.spec.TaskId), "goray shut down before the task ran again"))
	case x.cancelled:
		s.mu.Unlock()
		s.finish(x, nil, s.cancelErr(x))
	default:
		x.queue.tasks = append(x.queue.tasks, x)
		s.pumpLocked(x.queue)
		s.mu.Unlock()
	}
}

// ranOnDeadWorker picks, among the tasks in flight on a worker that died,
// the one that was running: the first pushed of those that reached it. A
// worker runs a lease's tasks in push order, one at a time; only a task
// blocked in Get lets the next start, and then the blocked one was pushed
// first, so it is charged (the approximation errs on the oldest).
func ranOnDeadWorker(tasks []*pendingTask) *pendingTask {
	var ran *pendingTask
	for _, x := range tasks {
		if x.finished || x.notSent {
			continue
		}
		if ran == nil || x.pushSeq < ran.pushSeq {
			ran = x
		}
	}
	return ran
}

func (s *submitter) cancelErr(t *pendingTask) *TaskError {
	return &TaskError{Kind: protos.ErrorKind_ERROR_KIND_CANCELLED, Function: t.spec.Function, TaskID: protos.MustUniqueID(t.spec.TaskId), Message: "cancelled by the caller"}
}

// finish completes the task's return object and releases its arguments.
func (s *submitter) finish(t *pendingTask, data *protos.ObjectData, terr *TaskError) {
	taskID := protos.MustUniqueID(t.spec.TaskId)
	s.mu.Lock()
	if t.finished {
		s.mu.Unlock()
		return
	}
	t.finished = true
	delete(s.tasks, taskID)
	delete(s.children, taskID)
	attempt, runMicros, ranOn, event := t.spec.GetAttempt(), t.runMicros, t.ranOn, t.event
	s.mu.Unlock()
	s.cw.taskAttemptEnded(event, t.spec.GetTaskId(), attempt, runMicros, ranOn, terr)
	lin := lineageOf(t, data)
	if lin != nil && s.cw.isWorker {
		if err := s.cw.watchNodes(); err != nil {
			s.cw.log.Warn().Err(err).Msg("objects this worker owns will not be rebuilt if their node dies")
		}
	}
	if !s.cw.objects.completeWith(t.returnID, data, terr, data.GetNestedRefs(), lin) {
		s.cw.objects.removeSubmitted(t.argRefs)
	}
}

// cancel cancels the task that returns id (see Cancel).
func (s *submitter) cancel(id protos.ObjectID, force, recursive bool) bool {
	taskID := id.TaskID()
	s.mu.Lock()
	t, ok := s.tasks[taskID]
	if !ok || t.finished {
		s.mu.Unlock()
		return false
	}
	t.cancelled, t.force, t.recursive = true, force, recursive
	queued := false
	if q := t.queue; q != nil && t.lease == nil {
		for i, x := range q.tasks {
			if x == t {
				q.tasks = append(q.tasks[:i], q.tasks[i+1:]...)
				queued = true
				break
			}
		}
	}
	l := t.lease
	s.mu.Unlock()
	if queued || (l == nil && (t.resolving || t.parked)) {
		s.finish(t, nil, s.cancelErr(t))
		return true
	}
	if l != nil {
		_ = l.conn.Go(protos.Method_CANCEL_TASK, &protos.CancelTaskRequest{TaskId: taskID.Bytes(), Force: force, Recursive: recursive}, func([]byte, error) {})
	}
	return true
}

// cancelChildren cancels the tasks submitted from within parent.
func (s *submitter) cancelChildren(parent protos.TaskID, force bool) {
	s.mu.Lock()
	kids := append([]protos.TaskID(nil), s.children[parent]...)
	s.mu.Unlock()
	for _, k := range kids {
		s.cancel(protos.ObjectIDFor(k, 1), force, true)
	}
}

func (s *submitter) shutdown() {
	s.mu.Lock()
	s.closed = true
	var leases []*lease
	var pending []*pendingTask
	for _, q := range s.queues {
		for _, l := range q.leases {
			if l.idle != nil {
				l.idle.Stop()
			}
			l.done = true
			leases = append(leases, l)
		}
		pending = append(pending, q.tasks...)
		q.tasks = nil
		q.leases = nil
	}
	s.mu.Unlock()
	for _, t := range pending {
		s.finish(t, nil, systemError(protos.ErrorKind_ERROR_KIND_SYSTEM, t.spec.Function, protos.MustUniqueID(t.spec.TaskId), "goray shut down before the task ran"))
	}
	for _, l := range leases {
		s.returnLease(l.raylet, l.id, false)
	}
}
