package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/taskevents"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// actorDirectory is a process's view of the actors it calls: one
// actorState per actor, fed by the GCS's events about it.
type actorDirectory struct {
	cw     *Worker
	mu     sync.Mutex
	states map[protos.UniqueID]*actorState
	seq    uint64
	// registering holds a token per unnamed actor whose registration is
	// in flight (createAsync), bounding them; regs counts their
	// goroutines, which regCtx ends when the process closes.
	registering chan struct{}
	regs        sync.WaitGroup
	regCtx      context.Context
	regCancel   context.CancelFunc
}

// actorState queues this process's calls to one actor and sends them, in
// submission order, while the actor is alive.
type actorState struct {
	d     *actorDirectory
	id    protos.UniqueID
	mu    sync.Mutex
	info  *protos.ActorInfo
	rank  int
	conn  *wire.Conn
	epoch int // counts addresses, so a stale connection's news is ignored
	// order holds calls not yet sent, in submission order; a call is sent
	// once it and every call before it have their arguments.
	order    []*actorCall
	inflight map[protos.TaskID]*actorCall
	pending  int
	unsub    func()
	ready    chan struct{} // closed once the first state is known
	seenInfo bool
	// registered is closed once the GCS has answered the registration
	// of an actor this process created without waiting (createAsync),
	// with regErr set if it failed; nil for every other actor.
	registered chan struct{}
	regErr     error
}

type actorCall struct {
	req         *protos.ActorCallRequest
	returnID    protos.ObjectID
	argRefs     []protos.ObjectID
	retriesLeft int32
	resolved    bool
	done        bool
	// conn is the connection the call was last sent on: only that
	// connection's order says whether its reply can still come.
	conn *wire.Conn
	// runMicros is how long the call ran, from its reply, and ranOn the
	// actor's process it ran in.
	runMicros uint64
	ranOn     *protos.Address
	// event is the attempt's first task event (task_events.go).
	event taskevents.Handle
	// fn (Class.Method) and parent describe the call in its task events.
	fn     string
	parent protos.TaskID
}

// actorDeathReplyWait bounds how long calls in flight on an actor the GCS
// declared dead wait for a reply already on its way (see
// settleAfterDeath), for a connection that neither answers nor closes,
// as to a partitioned node.
const actorDeathReplyWait = 5 * time.Second

func (cw *Worker) actors() *actorDirectory { return cw.actorDir }

// Unnamed actors register without their creator waiting (createAsync):
// at most maxRegistering at once per process, each given up after
// actorRegisterTimeout.
const (
	maxRegistering       = 1024
	actorRegisterTimeout = 2 * time.Minute
)

func newActorDirectory(cw *Worker) *actorDirectory {
	ctx, cancel := context.WithCancel(context.Background())
	return &actorDirectory{cw: cw, states: map[protos.UniqueID]*actorState{},
		registering: make(chan struct{}, maxRegistering), regCtx: ctx, regCancel: cancel}
}

// rankOf orders actor records so older news never overwrites newer.
func rankOf(info *protos.ActorInfo) int {
	if info.GetState() == protos.ActorState_DEAD {
		return 1 << 30
	}
	r := int(info.GetNumRestarts()) * 2
	if info.GetState() == protos.ActorState_ALIVE {
		r++
	}
	return r
}

// state returns the actor's state, subscribing to its events the first time.
func (d *actorDirectory) state(ctx context.Context, id protos.UniqueID, fetch bool) (*actorState, error) {
	return d.stateOf(ctx, id, fetch, false)
}

// stateOf is state; registering marks a new actor whose registration
// this process is about to send without waiting (createAsync).
func (d *actorDirectory) stateOf(ctx context.Context, id protos.UniqueID, fetch, registering bool) (*actorState, error) {
	d.mu.Lock()
	st, ok := d.states[id]
	if ok {
		d.mu.Unlock()
		return st, nil
	}
	st = &actorState{d: d, id: id, inflight: map[protos.TaskID]*actorCall{}, rank: -1, ready: make(chan struct{})}
	if registering {
		st.registered = make(chan struct{})
	}
	d.states[id] = st
	d.mu.Unlock()
	g, err := d.cw.GCS()
	if err != nil {
		d.drop(id)
		return nil, err
	}
	unsub, err := g.WatchActor(id, st.update)
	if err != nil {
		d.drop(id)
		return nil, fmt.Errorf("goray: watch actor %s: %w", id.Short(), err)
	}
	st.unsub = unsub
	if fetch {
		info, err := g.GetActor(ctx, id)
		if err != nil {
			d.drop(id)
			unsub()
			return nil, fmt.Errorf("goray: actor %s: %w", id.Short(), err)
		}
		st.update(info)
	}
	return st, nil
}

func (d *actorDirectory) drop(id protos.UniqueID) {
	d.mu.Lock()
	delete(d.states, id)
	d.mu.Unlock()
}

// create registers a new actor with the GCS: a named actor before it
// returns, since its name may be taken; an unnamed one in the background
// (createAsync).
func (d *actorDirectory) create(ctx context.Context, spec *protos.ActorSpec) (*protos.ActorInfo, error) {
	if spec.GetOptions().GetName() == "" {
		return d.createAsync(ctx, spec)
	}
	id := protos.MustUniqueID(spec.GetActorId())
	st, err := d.state(ctx, id, false)
	if err != nil {
		return nil, err
	}
	g, _ := d.cw.GCS()
	info, err := g.RegisterActor(ctx, spec)
	if err != nil {
		d.drop(id)
		if st.unsub != nil {
			st.unsub()
		}
		return nil, fmt.Errorf("goray: create actor %s: %w", spec.GetClassName(), err)
	}
	if got := protos.MustUniqueID(info.GetActorId()); got != id {
		// GetIfExists found the live actor of that name.
		d.drop(id)
		if st.unsub != nil {
			st.unsub()
		}
		if st, err = d.state(ctx, got, false); err != nil {
			return nil, err
		}
	}
	st.update(info)
	return info, nil
}

// createAsync registers an unnamed actor without waiting for the GCS, as
// Ray does: creating many actors costs the creator a round trip to the GCS
// for none of them. Nothing the GCS could refuse is left to find out later
// but its own state (a finished job, an outage): the spec passes the
// GCS's own checks first. Calls queue until the actor is alive, as for any
// actor. What would let another process reach the actor (its handle
// encoded, Kill) waits for the registration (awaitRegistered); if that
// fails, the actor is dead here with the reason, and calls fail with it.
func (d *actorDirectory) createAsync(ctx context.Context, spec *protos.ActorSpec) (*protos.ActorInfo, error) {
	if err := gcs.CheckActorSpec(spec); err != nil {
		return nil, fmt.Errorf("goray: create actor %s: %w", spec.GetClassName(), err)
	}
	select {
	case d.registering <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("goray: create actor %s: %w", spec.GetClassName(), ctx.Err())
	}
	id := protos.MustUniqueID(spec.GetActorId())
	st, err := d.stateOf(ctx, id, false, true)
	if err != nil {
		<-d.registering
		return nil, err
	}
	g, _ := d.cw.GCS()
	info := &protos.ActorInfo{ActorId: spec.GetActorId(), Spec: spec, State: protos.ActorState_PENDING_CREATION}
	st.update(info)
	d.regs.Go(func() {
		defer func() { <-d.registering }()
		rctx, cancel := context.WithTimeout(d.regCtx, actorRegisterTimeout)
		got, err := g.RegisterActor(rctx, spec)
		cancel()
		if err == nil {
			st.update(got)
			close(st.registered)
			return
		}
		st.regErr = fmt.Errorf("goray: create actor %s: %w", spec.GetClassName(), err)
		st.update(&protos.ActorInfo{ActorId: spec.GetActorId(), Spec: spec, State: protos.ActorState_DEAD,
			DeathCause: "its registration with the GCS failed: " + err.Error()})
		close(st.registered)
		if d.regCtx.Err() != nil {
			return // this process is closing
		}
		d.cw.log.Warn().Err(err).Str("actor", id.Short()).Str("class", spec.GetClassName()).Msg("actor registration failed")
		// A registration that timed out may have reached the GCS all
		// the same: nothing here will use that actor.
		kctx, kcancel := context.WithTimeout(d.regCtx, actorRegisterTimeout)
		_ = g.KillActor(kctx, id, true)
		kcancel()
	})
	return info, nil
}

// awaitRegistered waits until the GCS has answered the registration of
// an actor this process created without waiting (at once for any other
// actor), and returns its error.
func (d *actorDirectory) awaitRegistered(ctx context.Context, id protos.UniqueID) error {
	d.mu.Lock()
	st := d.states[id]
	d.mu.Unlock()
	if st == nil || st.registered == nil {
		return nil
	}
	select {
	case <-st.registered:
		return st.regErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// update applies news about the actor.
func (st *actorState) update(info *protos.ActorInfo) {
	st.mu.Lock()
	r := rankOf(info)
	if r < st.rank {
		st.mu.Unlock()
		return
	}
	st.rank = r
	st.info = info
	if !st.seenInfo {
		st.seenInfo = true
		close(st.ready)
	}
	switch info.GetState() {
	case protos.ActorState_ALIVE:
		if st.conn != nil {
			st.flushLocked()
			st.mu.Unlock()
			return
		}
		st.epoch++
		epoch := st.epoch
		endpoint := st.d.cw.reach(info.GetAddress())
		st.mu.Unlock()
		st.d.cw.withPeer(endpoint, func(c *wire.Conn, err error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			if epoch != st.epoch {
				return
			}
			if err != nil {
				// The worker is gone already; the GCS will say what next.
				return
			}
			st.conn = c
			st.flushLocked()
		})
		return
	case protos.ActorState_DEAD:
		st.conn = nil
		st.epoch++
		failed := st.order
		st.order = nil
		sent := make([]*actorCall, 0, len(st.inflight))
		for _, c := range st.inflight {
			sent = append(sent, c)
		}
		st.mu.Unlock()
		for _, c := range failed {
			st.finish(c, nil, st.deadError(c, info))
		}
		if len(sent) > 0 {
			st.settleAfterDeath(sent, info)
		}
		return
	default:
		st.conn = nil
		st.epoch++
		failed := st.unavailableLocked()
		st.mu.Unlock()
		st.failUnavailable(failed, info)
		return
	}
}

// settleAfterDeath fails the calls that were in flight when the GCS
// declared the actor dead, once no reply can still come for them. The
// news travels apart from the replies: an actor that exits itself
// answers every call it finished before it tells the GCS, yet the
// caller may hear of the death before it has read those answers. A SYNC
// on each call's connection is answered after every reply queued before
// it, so once its answer is in, or the connection is gone, a call still
// in flight has no reply coming.
func (st *actorState) settleAfterDeath(sent []*actorCall, info *protos.ActorInfo) {
	byConn := map[*wire.Conn][]*actorCall{}
	for _, c := range sent {
		byConn[c.conn] = append(byConn[c.conn], c)
	}
	settle := func(calls []*actorCall) {
		st.mu.Lock()
		left := calls[:0]
		for _, c := range calls {
			taskID := protos.MustUniqueID(c.req.GetTaskId())
			if st.inflight[taskID] == c {
				delete(st.inflight, taskID)
				left = append(left, c)
			}
		}
		st.mu.Unlock()
		for _, c := range left {
			st.finish(c, nil, st.deadError(c, info))
		}
	}
	time.AfterFunc(actorDeathReplyWait, func() { settle(slices.Clone(sent)) })
	for conn, calls := range byConn {
		if conn == nil {
			continue
		}
		// Go fails only on a closed connection, which has failed its
		// calls through their own callbacks already, or is about to.
		_ = conn.Go(protos.Method_SYNC, nil, func([]byte, error) { settle(calls) })
	}
}

// unavailableLocked takes the calls ready to be sent while the actor is
// restarting, if its calls may not wait for a restart (MaxTaskRetries 0,
// Ray's fail_if_actor_unreachable); the caller fails them with
// failUnavailable once it has released the lock.
func (st *actorState) unavailableLocked() []*actorCall {
	if st.conn != nil || st.info.GetState() != protos.ActorState_RESTARTING || st.info.GetSpec().GetOptions().GetMaxTaskRetries() != 0 {
		return nil
	}
	i := 0
	for i < len(st.order) && st.order[i].resolved {
		i++
	}
	if i == 0 {
		return nil
	}
	failed := slices.Clone(st.order[:i])
	st.order = slices.Delete(st.order, 0, i)
	return failed
}

func (st *actorState) failUnavailable(calls []*actorCall, info *protos.ActorInfo) {
	for _, c := range calls {
		st.finish(c, nil, st.unavailableError(c, info))
	}
}

// unavailableError is how a call fails that was made while the actor
// restarts and may not wait for it.
func (st *actorState) unavailableError(c *actorCall, info *protos.ActorInfo) *TaskError {
	limit := "unlimited"
	if n := info.GetSpec().GetOptions().GetMaxRestarts(); n >= 0 {
		limit = fmt.Sprint(n)
	}
	cause := info.GetDeathCause()
	if cause == "" {
		cause = "its worker was lost"
	}
	return &TaskError{Kind: protos.ErrorKind_ERROR_KIND_ACTOR_UNAVAILABLE, Function: info.GetSpec().GetClassName() + "." + c.req.GetMethod(),
		TaskID: protos.MustUniqueID(c.req.GetTaskId()),
		Message: fmt.Sprintf("the actor is restarting (restart %d of %s; %s); with MaxTaskRetries 0 a call does not wait for the restart, call again once it is back",
			info.GetNumRestarts(), limit, cause)}
}

func (st *actorState) deadError(c *actorCall, info *protos.ActorInfo) *TaskError {
	fn := info.GetSpec().GetClassName() + "." + c.req.GetMethod()
	if ce := info.GetCreationError(); ce != nil {
		e := &TaskError{Kind: protos.ErrorKind_ERROR_KIND_ACTOR_DIED, Function: fn, TaskID: protos.MustUniqueID(c.req.GetTaskId()),
			Message: "the actor's constructor failed: " + ce.GetMessage()}
		e.cause = taskErrorFromProto(ce)
		return e
	}
	cause := info.GetDeathCause()
	if cause == "" {
		cause = "the actor is dead"
	}
	return &TaskError{Kind: protos.ErrorKind_ERROR_KIND_ACTOR_DIED, Function: fn, TaskID: protos.MustUniqueID(c.req.GetTaskId()), Message: cause}
}

// CallActor submits a call of method m on the actor h names.
func (cw *Worker) CallActor(ctx context.Context, h *ActorHandle, m Method, args []Arg) (ObjectRef, error) {
	if h.Class != m.Class {
		return ObjectRef{}, fmt.Errorf("%w: method %s.%s called on a %s actor", ErrArgument, m.Class, m.Name, h.Class)
	}
	st, err := cw.actors().state(ctx, h.ID, true)
	if err != nil {
		return ObjectRef{}, err
	}
	select {
	case <-st.ready:
	case <-ctx.Done():
		return ObjectRef{}, ctx.Err()
	}
	fn := m.Class + "." + m.Name
	st.mu.Lock()
	opts := st.info.GetSpec().GetOptions()
	if max := opts.GetMaxPendingCalls(); max > 0 && int32(st.pending) >= max {
		pending := st.pending
		st.mu.Unlock()
		return ObjectRef{}, &TaskError{Kind: protos.ErrorKind_ERROR_KIND_PENDING_CALLS_EXCEEDED, Function: fn,
			Message: fmt.Sprintf("this caller has %d calls pending on actor %s (MaxPendingCalls %d)", pending, h.ID.Short(), max)}
	}
	st.pending++
	st.mu.Unlock()
	encoded, argRefs, err := cw.buildArgs(ctx, fn, args)
	if err != nil {
		st.mu.Lock()
		st.pending--
		st.mu.Unlock()
		return ObjectRef{}, err
	}
	taskID := protos.NewUniqueID()
	c := &actorCall{
		req: &protos.ActorCallRequest{ActorId: h.ID.Bytes(), Method: m.Name, Args: encoded, TaskId: taskID.Bytes(), Caller: cw.node().addr,
			Seq: cw.actors().nextSeq()},
		returnID:    protos.ObjectIDFor(taskID, 1),
		argRefs:     argRefs,
		retriesLeft: opts.GetMaxTaskRetries(),
		fn:          fn,
	}
	// The parent is only for task events: no context lookup on every
	// call when they are off.
	if ti := taskInfoFrom(ctx); ti != nil && cw.events != nil {
		c.parent = ti.taskID
	}
	waits := len(argRefs) > 0
	if waits {
		c.event = cw.actorCallSubmitted(c.req, fn, c.parent, protos.TaskState_PENDING_ARGS)
	} else {
		c.event = cw.actorCallSubmitted(c.req, fn, c.parent, protos.TaskState_SUBMITTED)
	}
	cw.objects.addOwned(c.returnID)
	ref := newObjectRef(cw, c.returnID, cw.node().addr)
	if m.Stream {
		// Streaming calls are not retried: items already consumed
		// cannot be taken back.
		c.retriesLeft = 0
		cw.streams.open(cw, taskID)
	}
	st.mu.Lock()
	info := st.info
	if info.GetState() == protos.ActorState_RESTARTING && st.conn == nil && opts.GetMaxTaskRetries() == 0 {
		// Not queued at all: waiting for its arguments must not turn it
		// into a call sent after the restart.
		st.mu.Unlock()
		st.finish(c, nil, st.unavailableError(c, info))
		return ref, nil
	}
	st.order = append(st.order, c)
	st.mu.Unlock()
	if info.GetState() == protos.ActorState_DEAD {
		st.update(info) // fails the queue, this call included
		return ref, nil
	}
	cw.resolveArgs(encoded, func(depErr *TaskError) {
		if depErr != nil {
			st.mu.Lock()
			st.removeLocked(c)
			st.mu.Unlock()
			st.finish(c, nil, depErr)
			return
		}
		if waits {
			cw.taskState(c.req.GetTaskId(), c.req.GetAttempt(), protos.TaskState_SUBMITTED)
		}
		st.mu.Lock()
		c.resolved = true
		st.flushLocked()
		failed := st.unavailableLocked()
		info := st.info
		st.mu.Unlock()
		st.failUnavailable(failed, info)
	})
	return ref, nil
}

func (d *actorDirectory) nextSeq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	return d.seq
}

func (st *actorState) removeLocked(c *actorCall) {
	for i, x := range st.order {
		if x == c {
			st.order = append(st.order[:i], st.order[i+1:]...)
			return
		}
	}
}

// flushLocked sends the calls at the head of the queue whose arguments are
// ready, while the actor has a connection.
func (st *actorState) flushLocked() {
	for st.conn != nil && len(st.order) > 0 && st.order[0].resolved {
		c := st.order[0]
		st.order[0] = nil
		st.order = st.order[1:]
		taskID := protos.MustUniqueID(c.req.GetTaskId())
		st.inflight[taskID] = c
		conn, epoch := st.conn, st.epoch
		c.conn = conn
		err := conn.Go(protos.Method_ACTOR_CALL, c.req, func(payload []byte, err error) {
			st.onReply(c, epoch, payload, err)
		})
		if err == nil {
			continue
		}
		if !errors.Is(err, wire.ErrClosed) {
			go st.onReply(c, epoch, nil, err)
			continue
		}
		// The connection had closed (the actor's process died while this
		// caller was idle): the call never left, so it is not an attempt.
		// It goes back to the head of the queue to wait for the GCS's
		// news, and for a new connection in case the actor is still there.
		delete(st.inflight, taskID)
		c.conn = nil
		st.order = slices.Insert(st.order, 0, c)
		st.conn = nil
		st.epoch++
		go st.reconnect(st.epoch, conn)
		return
	}
}

// reconnect dials the actor again after its connection was found closed,
// unless news about the actor came meanwhile. If the dial gives back the
// closed connection (not yet dropped by withPeer), the call waits for the
// GCS's news instead.
func (st *actorState) reconnect(epoch int, closed *wire.Conn) {
	st.mu.Lock()
	if epoch != st.epoch || st.info.GetState() != protos.ActorState_ALIVE {
		st.mu.Unlock()
		return
	}
	endpoint := st.d.cw.reach(st.info.GetAddress())
	st.mu.Unlock()
	st.d.cw.withPeer(endpoint, func(c *wire.Conn, err error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if epoch != st.epoch || err != nil || c == closed {
			return
		}
		st.conn = c
		st.flushLocked()
	})
}

// onReply completes a call, or re-queues it when the actor's process died
// under it and retries are left.
func (st *actorState) onReply(c *actorCall, epoch int, payload []byte, err error) {
	taskID := protos.MustUniqueID(c.req.GetTaskId())
	var reply protos.ActorCallReply
	if err == nil {
		if uerr := unmarshalProto(payload, &reply); uerr != nil {
			err = fmt.Errorf("malformed actor reply: %w", uerr)
		}
	}
	st.mu.Lock()
	if _, ok := st.inflight[taskID]; !ok {
		st.mu.Unlock()
		return
	}
	delete(st.inflight, taskID)
	if err == nil {
		c.runMicros, c.ranOn = reply.GetRunMicros(), st.info.GetAddress()
		st.mu.Unlock()
		res := reply.GetResult()
		if e := res.GetError(); e != nil {
			st.finish(c, nil, taskErrorFromProto(e))
			return
		}
		st.finish(c, res, nil)
		return
	}
	// The connection broke: the actor's process died (or is dying).
	if epoch == st.epoch {
		st.conn = nil
		st.epoch++
	}
	if c.retriesLeft != 0 && st.info.GetState() != protos.ActorState_DEAD {
		if c.retriesLeft > 0 {
			c.retriesLeft--
		}
		cw := st.d.cw
		cw.taskAttemptEnded(c.event, c.req.GetTaskId(), c.req.GetAttempt(), 0, st.info.GetAddress(), &TaskError{Kind: protos.ErrorKind_ERROR_KIND_ACTOR_DIED,
			Message: fmt.Sprintf("the actor's worker died while running the call: %v", err)})
		c.req.Attempt++
		c.event = cw.actorCallSubmitted(c.req, c.fn, c.parent, protos.TaskState_SUBMITTED)
		st.requeueLocked(c)
		st.mu.Unlock()
		return
	}
	info := st.info
	st.mu.Unlock()
	e := st.deadError(c, info)
	if info.GetState() != protos.ActorState_DEAD {
		// Not known yet why: the death cause says more once the GCS has it.
		e.Message = fmt.Sprintf("the actor's worker died while running the call: %v", err)
	}
	st.finish(c, nil, e)
}

// requeueLocked puts a call back in submission order.
func (st *actorState) requeueLocked(c *actorCall) {
	i := 0
	for i < len(st.order) && st.order[i].req.GetSeq() < c.req.GetSeq() {
		i++
	}
	st.order = append(st.order, nil)
	copy(st.order[i+1:], st.order[i:])
	st.order[i] = c
}

func (st *actorState) finish(c *actorCall, data *protos.ObjectData, terr *TaskError) {
	st.mu.Lock()
	if c.done {
		st.mu.Unlock()
		return
	}
	c.done = true
	st.pending--
	attempt, runMicros, ranOn, event := c.req.GetAttempt(), c.runMicros, c.ranOn, c.event
	st.mu.Unlock()
	cw := st.d.cw
	cw.taskAttemptEnded(event, c.req.GetTaskId(), attempt, runMicros, ranOn, terr)
	cw.objects.completeResult(c.returnID, data, terr)
	cw.objects.removeSubmitted(c.argRefs)
}

// GCS returns this process's GCS connection, dialling it the first
// time in a worker.
func (cw *Worker) GCS() (*gcs.Client, error) {
	cw.gcsMu.Lock()
	defer cw.gcsMu.Unlock()
	if cw.gcs != nil {
		return cw.gcs, nil
	}
	if cw.gcsAddress == "" {
		return nil, fmt.Errorf("%w: this process has no GCS address", ErrSystem)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10e9)
	defer cancel()
	natsOpts, err := cw.creds.NATSOptions(auth.RoleWorker)
	if err != nil {
		return nil, fmt.Errorf("goray: connect to GCS at %s: %w", cw.gcsAddress, err)
	}
	c, err := gcs.Dial(ctx, cw.gcsAddress, cw.log, natsOpts...)
	if err != nil {
		return nil, fmt.Errorf("goray: connect to GCS at %s: %w", cw.gcsAddress, err)
	}
	c.SetOutageWait(DefaultReconnectTimeout)
	cw.gcs, cw.ownGCS = c, true
	return c, nil
}

func (d *actorDirectory) close() {
	d.regCancel()
	d.regs.Wait()
	d.mu.Lock()
	states := d.states
	d.states = map[protos.UniqueID]*actorState{}
	d.mu.Unlock()
	for _, st := range states {
		if st.unsub != nil {
			st.unsub()
		}
	}
}

// cancelActorCall cancels an actor call: one not sent yet is dropped and
// fails with ErrTaskCancelled; a running one has its context cancelled on
// the actor's worker and then fails the same way.
func (cw *Worker) cancelActorCall(taskID protos.TaskID) error {
	d := cw.actors()
	d.mu.Lock()
	states := make([]*actorState, 0, len(d.states))
	for _, st := range d.states {
		states = append(states, st)
	}
	d.mu.Unlock()
	for _, st := range states {
		st.mu.Lock()
		for _, c := range st.order {
			if protos.MustUniqueID(c.req.GetTaskId()) == taskID {
				st.removeLocked(c)
				fn := st.info.GetSpec().GetClassName() + "." + c.req.GetMethod()
				st.mu.Unlock()
				st.finish(c, nil, &TaskError{Kind: protos.ErrorKind_ERROR_KIND_CANCELLED, Function: fn,
					TaskID: taskID, Message: "cancelled by the caller before it was sent"})
				return nil
			}
		}
		_, inflight := st.inflight[taskID]
		conn := st.conn
		st.mu.Unlock()
		if inflight && conn != nil {
			return conn.Go(protos.Method_CANCEL_TASK, &protos.CancelTaskRequest{TaskId: taskID.Bytes()}, func([]byte, error) {})
		}
	}
	return fmt.Errorf("%w: call %s is not pending on an actor", ErrArgument, taskID.Short())
}
