package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/goray/goray/actors"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// actorHost runs the actors the GCS placed on this worker. Each actor is a
// Proto.Actor actor: its mailbox keeps calls in arrival order (one
// connection per caller keeps each caller's order) and runs them one at a
// time, or hands them to goroutines up to the actor's concurrency limits.
type actorHost struct {
	cw *Worker
	mu sync.Mutex
	// packed is set once a packed actor was created here.
	packed bool
	system *actor.ActorSystem
	actors map[protos.UniqueID]*hostedActor
}

type hostedActor struct {
	id          protos.UniqueID
	class       *ActorClass
	self        any
	opts        *protos.ActorOptions
	pid         *actor.PID
	gcsConn     *wire.Conn
	numRestarts int32
	// sem bounds concurrent calls when MaxConcurrency > 1; groups bound
	// the calls of each concurrency group. nil means one at a time on the
	// actor's own goroutine.
	sem         chan struct{}
	groups      map[string]chan struct{}
	methodGroup map[string]string
	dispatcher  *pinnedDispatcher
	// exited holds the reason once a call returned ExitActor: calls that
	// start afterwards are refused instead of run, as Ray's exit_actor
	// ends the actor after the current call.
	exited atomic.Pointer[string]
}

// actorExitFlushTimeout bounds how long an actor that exits itself waits
// for its replies to be written: a caller that stopped reading must not
// keep the process alive.
const actorExitFlushTimeout = 5 * time.Second

// actorCallMsg is what the actor's mailbox receives.
type actorCallMsg struct {
	conn   *wire.Conn
	req    wire.Request
	msg    *protos.ActorCallRequest
	taskID protos.TaskID
}

// actorInfo rides in a method's context.
type actorInfo struct {
	id          protos.UniqueID
	numRestarts int32
}

type actorInfoKey struct{}

func newActorHost(cw *Worker) *actorHost {
	return &actorHost{cw: cw, actors: map[protos.UniqueID]*hostedActor{}}
}

func (h *actorHost) actorSystem() *actor.ActorSystem {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.system == nil {
		h.system = actors.NewSystem(h.cw.log)
	}
	return h.system
}

// create runs an actor's constructor (off the connection's reader).
func (h *actorHost) create(c *wire.Conn, req *wire.Request) {
	m := &protos.CreateActorRequest{}
	if err := unmarshalProto(req.Payload, m); err != nil {
		h.cw.reject(c, req, malformed(err))
		return
	}
	id, err := checkCreateActor(m)
	if err != nil {
		h.cw.reject(c, req, err)
		return
	}
	r := *req
	go func() {
		reply := h.construct(c, id, m)
		_ = c.Reply(&r, reply)
	}()
}

// construct creates actor id from m (checked by checkCreateActor).
func (h *actorHost) construct(c *wire.Conn, id protos.UniqueID, m *protos.CreateActorRequest) *protos.CreateActorReply {
	spec := m.GetSpec()
	fail := func(kind protos.ErrorKind, err error, stack string) *protos.CreateActorReply {
		te := &TaskError{Kind: kind, Function: spec.GetClassName(), Message: err.Error(), Stack: stack, PID: os.Getpid(), NodeID: h.cw.node().id, cause: err}
		return &protos.CreateActorReply{Error: te.toProto()}
	}
	class, ok := lookupActorClass(spec.GetClassName())
	if !ok {
		return fail(protos.ErrorKind_ERROR_KIND_UNKNOWN_FUNCTION, fmt.Errorf("%w: actor class %q is not registered in worker binary %s", ErrUnknownFunction, spec.GetClassName(), executable()), "")
	}
	ctx := context.WithValue(context.Background(), actorInfoKey{}, &actorInfo{id: id, numRestarts: m.GetNumRestarts()})
	f := &registeredFunc{name: class.name, params: class.params}
	// The constructor's arguments stay pinned while the process lives: the
	// actor may keep views of them in its state, as Ray pins an actor's
	// creation arguments for its lifetime.
	pins := &argPins{cw: h.cw, ctx: ctx}
	args, err := f.decodeArgs(spec.GetArgs(), pins.read)
	h.cw.objects.flushBorrows()
	if err != nil {
		return fail(protos.ErrorKind_ERROR_KIND_ARGUMENT, err, "")
	}
	self, err, stack := protect(func() (any, error) { return class.ctor(ctx, args) })
	if err != nil {
		return fail(protos.ErrorKind_ERROR_KIND_TASK, err, stack)
	}
	ha := &hostedActor{id: id, class: class, self: self, opts: spec.GetOptions(), gcsConn: c, numRestarts: m.GetNumRestarts(), methodGroup: map[string]string{}}
	if n := ha.opts.GetMaxConcurrency(); n > 1 {
		ha.sem = make(chan struct{}, n)
	}
	for _, g := range ha.opts.GetConcurrencyGroups() {
		if ha.groups == nil {
			ha.groups = map[string]chan struct{}{}
		}
		ha.groups[g.GetName()] = make(chan struct{}, max(1, int(g.GetMaxConcurrency())))
		for _, meth := range g.GetMethods() {
			ha.methodGroup[meth] = g.GetName()
		}
	}
	sys := h.actorSystem()
	ha.dispatcher = newPinnedDispatcher()
	props := actor.PropsFromFunc(func(actx actor.Context) {
		switch msg := actx.Message().(type) {
		case *actorCallMsg:
			h.dispatch(ha, msg)
		case *actor.Stopped:
			ha.dispatcher.stop()
		}
	}, actor.WithDispatcher(ha.dispatcher))
	// One name per incarnation: a restart on the same host may come before
	// the previous incarnation's asynchronous stop has finished.
	pid, err := sys.Root.SpawnNamed(props, fmt.Sprintf("actor-%s-%d", id, m.GetNumRestarts()))
	if err != nil {
		ha.dispatcher.stop() // nothing will stop it: the actor never ran
		return fail(protos.ErrorKind_ERROR_KIND_SYSTEM, fmt.Errorf("spawn actor: %w", err), "")
	}
	ha.pid = pid
	h.mu.Lock()
	h.actors[id] = ha
	h.packed = h.packed || ha.opts.GetPacked()
	h.mu.Unlock()
	return &protos.CreateActorReply{}
}

// call routes a method call to its actor's mailbox.
func (h *actorHost) call(c *wire.Conn, req *wire.Request) {
	m := &protos.ActorCallRequest{}
	if err := unmarshalProto(req.Payload, m); err != nil {
		h.cw.reject(c, req, malformed(err))
		return
	}
	id, taskID, err := checkActorCall(m)
	if err != nil {
		h.cw.reject(c, req, err)
		return
	}
	h.mu.Lock()
	ha, ok := h.actors[id]
	h.mu.Unlock()
	if !ok {
		te := &TaskError{Kind: protos.ErrorKind_ERROR_KIND_ACTOR_DIED, Function: m.GetMethod(), TaskID: taskID,
			Message: fmt.Sprintf("actor %s is not on this worker (pid %d)", id.Short(), os.Getpid())}
		_ = c.Reply(req, &protos.ActorCallReply{Result: &protos.ObjectData{Error: te.toProto()}})
		return
	}
	h.actorSystem().Root.Send(ha.pid, &actorCallMsg{conn: c, req: *req, msg: m, taskID: taskID})
}

// dispatch runs on the actor's goroutine, in mailbox order.
func (h *actorHost) dispatch(ha *hostedActor, msg *actorCallMsg) {
	sem := ha.sem
	if g, ok := ha.methodGroup[msg.msg.GetMethod()]; ok {
		sem = ha.groups[g]
	}
	if sem == nil {
		h.run(ha, msg)
		return
	}
	// Waiting here holds up the mailbox, so calls still start in order.
	sem <- struct{}{}
	go func() {
		defer func() { <-sem }()
		h.run(ha, msg)
	}()
}

func (h *actorHost) run(ha *hostedActor, msg *actorCallMsg) {
	m, taskID := msg.msg, msg.taskID
	fn := ha.class.name + "." + m.GetMethod()
	reply := func(d *protos.ObjectData, micros uint64) {
		// Borrowers registered while decoding the arguments must be known
		// to their owners before the caller may drop its refs.
		h.cw.objects.flushBorrows()
		_ = msg.conn.Reply(&msg.req, &protos.ActorCallReply{Result: d, RunMicros: micros})
	}
	fail := func(kind protos.ErrorKind, err error, stack string) {
		te := &TaskError{Kind: kind, Function: fn, TaskID: taskID, Message: err.Error(), Stack: stack, PID: os.Getpid(), NodeID: h.cw.node().id, cause: err}
		reply(&protos.ObjectData{Error: te.toProto()}, 0)
	}
	if reason := ha.exited.Load(); reason != nil {
		fail(protos.ErrorKind_ERROR_KIND_ACTOR_DIED, fmt.Errorf("the actor exited itself before the call ran: %s", *reason), "")
		return
	}
	meth, ok := ha.class.methods[m.GetMethod()]
	if !ok {
		fail(protos.ErrorKind_ERROR_KIND_UNKNOWN_FUNCTION, fmt.Errorf("%w: actor class %s has no registered method %q", ErrUnknownFunction, ha.class.name, m.GetMethod()), "")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Registered with the executor, so CANCEL_TASK reaches actor calls too.
	rt := h.cw.exec.track(taskID, m.GetAttempt(), cancel)
	defer h.cw.exec.untrack(taskID)
	if rt.wasCancelled() {
		fail(protos.ErrorKind_ERROR_KIND_CANCELLED, errors.New("cancelled before it started"), "")
		return
	}
	ctx = context.WithValue(ctx, actorInfoKey{}, &actorInfo{id: ha.id, numRestarts: ha.numRestarts})
	ctx = withTaskInfo(ctx, &taskInfo{taskID: taskID, function: fn, attempt: int(m.GetAttempt())})
	pins := &argPins{cw: h.cw, ctx: ctx}
	defer h.cw.taskEnded(pins)
	args, err := meth.decodeArgs(m.GetArgs(), pins.read)
	if err != nil {
		var te *TaskError
		if errors.As(err, &te) {
			reply(&protos.ObjectData{Error: te.toProto()}, 0)
			return
		}
		fail(protos.ErrorKind_ERROR_KIND_ARGUMENT, err, "")
		return
	}
	started := time.Now()
	rt.started.Store(started.UnixNano())
	var value any
	var stack string
	if meth.invokeStreamMethod != nil {
		yield := h.cw.yielder(ctx, msg.conn, taskID, m.GetCaller())
		_, err, stack = protect(func() (any, error) { return nil, meth.invokeStreamMethod(ctx, ha.self, args, yield) })
	} else {
		value, err, stack = protect(func() (any, error) { return meth.invokeMethod(ctx, ha.self, args) })
	}
	micros := uint64(time.Since(started).Microseconds())
	if rt.wasCancelled() {
		fail(protos.ErrorKind_ERROR_KIND_CANCELLED, errors.New("cancelled while running"), "")
		return
	}
	var exit *actorExit
	if errors.As(err, &exit) {
		fail(protos.ErrorKind_ERROR_KIND_ACTOR_DIED, fmt.Errorf("the actor exited itself: %s", exit.reason), "")
		if ha.exited.CompareAndSwap(nil, &exit.reason) {
			h.exitActor(ha, exit.reason)
		}
		return
	}
	if err != nil {
		fail(protos.ErrorKind_ERROR_KIND_TASK, err, stack)
		return
	}
	d, kind, err := h.cw.encodeResult(ctx, protos.ObjectIDFor(taskID, 1), m.GetCaller(), fn, value)
	if err != nil {
		fail(kind, err, "")
		return
	}
	reply(d, micros)
}

// exitActor tells the GCS the actor exited itself, then ends the process.
// Replies already produced are written out first: once the GCS knows, it
// gives the process a short grace before its raylet kills it, and callers
// settle the calls still pending when they hear the actor is dead (see
// actorState.settleAfterDeath), so replies should be on their way by then.
func (h *actorHost) exitActor(ha *hostedActor, reason string) {
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), actorExitFlushTimeout)
	if err := h.cw.flushConns(flushCtx); err != nil {
		h.cw.log.Warn().Err(err).Msg("actor exiting: some replies were not written")
	}
	cancelFlush()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A GCS that restarted attached on a connection of its own
	// (actor_attach.go): the latest is the one to tell.
	h.mu.Lock()
	gcsConn := ha.gcsConn
	h.mu.Unlock()
	if err := gcsConn.Call(ctx, protos.Method_ACTOR_EXITED, &protos.ActorExitedRequest{ActorId: ha.id.Bytes(), Reason: reason}, &protos.ActorExitedReply{}); err != nil {
		h.cw.log.Warn().Err(err).Msg("report actor exit to the GCS")
	}
	if ha.opts.GetPacked() {
		h.stop(ha)
		return
	}
	h.exitProcess()
}

// kill ends the actor at the GCS's request. An actor with a process of its
// own ends with its process, which the GCS sees as the end of its
// connection; a packed actor is stopped alone, its process hosting others.
func (h *actorHost) kill(c *wire.Conn, req *wire.Request) {
	var m protos.KillActorRequest
	if err := unmarshalProto(req.Payload, &m); err != nil {
		h.cw.reject(c, req, malformed(err))
		return
	}
	// A bad id must not pass for "an actor this process does not host",
	// which ends the process.
	id, err := parseID("actor_id", m.GetActorId())
	if err != nil {
		h.cw.reject(c, req, err)
		return
	}
	h.mu.Lock()
	ha, ok := h.actors[id]
	h.mu.Unlock()
	if ok && ha.opts.GetPacked() {
		h.stop(ha)
		_ = c.Reply(req, &protos.KillActorReply{})
		return
	}
	if !ok && h.hostsPacked() {
		// Already gone (it exited itself while the kill was on its way):
		// the process hosts other actors and stays.
		_ = c.Reply(req, &protos.KillActorReply{})
		return
	}
	_ = c.Reply(req, &protos.KillActorReply{})
	go h.exitProcess()
}

// hostsPacked reports whether this process hosts packed actors (it then
// never exits for one of them).
func (h *actorHost) hostsPacked() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.packed {
		return true
	}
	for _, a := range h.actors {
		if a.opts.GetPacked() {
			return true
		}
	}
	return false
}

// stop removes a packed actor from this process.
func (h *actorHost) stop(ha *hostedActor) {
	h.mu.Lock()
	delete(h.actors, ha.id)
	sys := h.system
	h.mu.Unlock()
	if sys != nil && ha.pid != nil {
		sys.Root.Stop(ha.pid)
	}
}

func (h *actorHost) exitProcess() {
	if !h.cw.isWorker {
		return
	}
	h.cw.close()
	os.Exit(0)
}

func (h *actorHost) close() {
	h.mu.Lock()
	sys := h.system
	h.system = nil
	h.mu.Unlock()
	if sys != nil {
		sys.Shutdown()
	}
}
