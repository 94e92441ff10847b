package gcs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet/scheduling"
)

// actorManager owns the actor table (Ray's GcsActorManager): registration,
// named-actor lookup, scheduling onto dedicated worker leases, failure
// detection, restarts and kills.
//
// The mailbox never blocks on the network. Each step that talks to a
// raylet or a worker runs on a goroutine of its own, which posts its
// result back as a message tagged with the actor's epoch. The epoch changes
// whenever the actor's current attempt is abandoned (killed, restarted,
// dead), so a result arriving for an attempt that no longer matters is
// recognised and cleaned up (its lease returned) instead of applied.
//
// State machine (ActorInfo.state):
//
//	PENDING_CREATION --created--> ALIVE
//	PENDING_CREATION / ALIVE / RESTARTING --worker lost or kill(no_restart=False)-->
//	    RESTARTING (restarts left; num_restarts+1, rescheduled) or DEAD
//	any but DEAD --constructor failed / exited itself / kill(no_restart=True) /
//	    job finished (not detached) / job's workers cannot start--> DEAD
type actorManager struct {
	bucketState
	env    *managerEnv
	shared *actorShared

	actors       map[protos.UniqueID]*actorEntry
	names        map[actorName]protos.UniqueID // non-DEAD named actors
	finishedJobs map[protos.JobID]bool
	// hosts are the packed actors' shared workers (actor_packed.go).
	hosts packedHosts

	root *actor.RootContext
	self *actor.PID
}

// actorShared outlives a manager instance restarted by its supervisor:
// goroutines of the previous instance keep posting results, and the epochs
// they carry must never be reused.
type actorShared struct {
	placer      placer
	nodes, jobs *actor.PID
	epochs      atomic.Uint64
	// stopped is closed when the manager stops for good; pending retry
	// timers then do nothing.
	stopped  chan struct{}
	stopOnce sync.Once
}

func (s *actorShared) nextEpoch() uint64 { return s.epochs.Add(1) }

type actorName struct{ namespace, name string }

type actorEntry struct {
	id, job protos.UniqueID
	info    *protos.ActorInfo // replaced, never mutated: replies share it
	// specJSON is info's spec as JSON, which does not change: encoded once
	// for every write of the record (nil for an actor loaded from the
	// store, whose record is then encoded whole).
	specJSON []byte
	// epoch identifies the current scheduling attempt or incarnation.
	epoch uint64
	// inc is the current attempt's lease and worker connection, once a
	// lease is granted; nil otherwise.
	inc *incarnation
	// excluded holds nodes that refused this scheduling round because they
	// cannot start the job's workers.
	excluded map[protos.NodeID]bool
	// platformErr is why the last node excluded for its platform refused.
	platformErr error
	backoff     time.Duration
	// exitReason holds an ACTOR_EXITED that overtook the creation result
	// of the current attempt; it applies once the actor is ALIVE.
	exitReason *string
}

// incarnation is one placement of an actor: its lease, and from creation
// on, the connection to its worker.
type incarnation struct {
	node   *protos.NodeInfo
	lease  []byte
	worker *protos.Address
	conn   actorConn
	// host is the packed host a packed actor's attempt is placed on (see
	// actor_packed.go); lease and conn are then the host's, not set here.
	host  *packedHost
	actor protos.UniqueID
	epoch uint64
}

// Messages from the manager's goroutines and the server.
type (
	actorRetry struct {
		id    protos.UniqueID
		epoch uint64
	}
	actorLeased struct {
		id    protos.UniqueID
		epoch uint64
		node  *protos.NodeInfo // nil: no node to try
		reply *protos.RequestWorkerLeaseReply
		err   error
		// unschedulable is set when no node may ever host the actor
		// (hard node affinity to a dead node, an invalid strategy).
		unschedulable error
	}
	actorCreated struct {
		id    protos.UniqueID
		epoch uint64
		inc   *incarnation
		reply *protos.CreateActorReply
		err   error
	}
	actorWorkerLost struct {
		id    protos.UniqueID
		epoch uint64
	}
	// actorReattached is the outcome of attaching to an actor a restored
	// record says is ALIVE (reattach).
	actorReattached struct {
		id    protos.UniqueID
		epoch uint64
		inc   *incarnation
		err   error
	}
	actorExited struct {
		id     protos.UniqueID
		epoch  uint64
		reason string
	}
	// jobEvent comes from the job manager (internal_events.go): a job
	// registered (again) or finished.
	jobEvent struct {
		job      protos.JobID
		finished bool
	}
)

// Timing of the manager's background work.
const (
	actorCallTimeout   = 5 * time.Second        // NOTIFY_ACTOR_STARTED, KILL_ACTOR, RETURN_WORKER_LEASE
	actorExitGrace     = 2 * time.Second        // wait for a worker to exit before its lease is taken back
	actorRetryMin      = 100 * time.Millisecond // first rescheduling delay after a transient failure
	actorRetryMax      = 5 * time.Second
	actorNodesTimeout  = 5 * time.Second
	deathKilled        = "killed by kill(no_restart=True)"
	deathKilledRestart = "killed by kill(no_restart=False)"
	deathJobFinished   = "its job finished"
	deathUnschedulable = "unschedulable"
	deathRuntimeEnv    = "runtime env setup failed"
)

func newActorManager(env *managerEnv, shared *actorShared) actor.Producer {
	return func() actor.Actor { return &actorManager{env: env, shared: shared} }
}

func (m *actorManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.root, m.self = ctx.ActorSystem().Root, ctx.Self()
		m.load()
		if m.loadErr == nil {
			m.resume()
			// Jobs that finished while no GCS was watching.
			if m.shared.jobs != nil {
				ctx.Request(m.shared.jobs, &protos.ListJobsRequest{})
			}
		}
	case *actor.Stopping:
		m.shared.stopOnce.Do(func() {
			close(m.shared.stopped)
			m.shared.placer.close()
		})
	case readyRequest:
		m.respondReady(ctx)
	case *protos.RegisterActorRequest:
		info, e := m.register(msg.GetSpec())
		ctx.Respond(&protos.RegisterActorReply{Actor: info, Error: e})
	case *protos.GetActorRequest:
		info, e := m.get(msg)
		ctx.Respond(&protos.GetActorReply{Actor: info, Error: e})
	case *protos.ListActorsRequest:
		actors, e := m.list(msg.GetJobId())
		ctx.Respond(&protos.ListActorsReply{Actors: actors, Error: e})
	case *protos.KillActorGcsRequest:
		ctx.Respond(&protos.KillActorGcsReply{Error: m.kill(msg.GetActorId(), msg.GetNoRestart())})
	case *protos.ListJobsReply:
		for _, j := range msg.GetJobs() {
			// The job manager's table holds checked records only.
			if id, err := protos.UniqueIDFromBytes(j.GetJobId()); err == nil && j.GetFinished() {
				m.jobFinished(id)
			}
		}
	case pgRemoved:
		m.groupRemoved(msg.id)
	case jobEvent:
		if msg.finished {
			m.jobFinished(msg.job)
		} else if m.finishedJobs != nil {
			// A driver registering its job again starts it over.
			delete(m.finishedJobs, msg.job)
		}
	case actorRetry:
		if e := m.current(msg.id, msg.epoch); e != nil && e.inc == nil {
			m.schedule(e)
		}
	case actorLeased:
		m.leased(msg)
	case actorCreated:
		m.created(msg)
	case actorReattached:
		m.reattached(msg)
	case actorWorkerLost:
		if e := m.current(msg.id, msg.epoch); e != nil {
			pid := e.info.GetAddress().GetPid()
			m.env.log.Warn().Str("actor", e.id.Short()).Str("class", e.info.GetSpec().GetClassName()).Int32("pid", pid).Msg("actor's worker died")
			m.restartOrDie(e, fmt.Sprintf("the actor's worker process (pid %d) died", pid), nil)
		}
	case actorExited:
		if e := m.current(msg.id, msg.epoch); e != nil {
			if e.info.GetState() != protos.ActorState_ALIVE {
				// The worker exited right after creating the actor, before
				// the creation result got here: ALIVE first, then DEAD.
				reason := msg.reason
				e.exitReason = &reason
				return
			}
			m.die(e, "the actor exited itself: "+msg.reason, nil, nil, actorExitGrace)
		}
	default:
		m.receivePacked(msg)
	}
}

// current returns the actor if msg's epoch is still its current attempt.
func (m *actorManager) current(id protos.UniqueID, epoch uint64) *actorEntry {
	e := m.actors[id]
	if e == nil || e.epoch != epoch || e.info.GetState() == protos.ActorState_DEAD {
		return nil
	}
	return e
}

func (m *actorManager) load() {
	m.actors = make(map[protos.UniqueID]*actorEntry)
	m.names = make(map[actorName]protos.UniqueID)
	m.finishedJobs = make(map[protos.JobID]bool)
	m.hosts = newPackedHosts()
	m.open(m.env, BucketActors, "goray GCS actor table: actor id (hex) -> ActorInfo", func(key string, value []byte) error {
		r, err := decodeActorRecord(key, value)
		if err != nil {
			skipRecord(m.env.log, err)
			return nil
		}
		id, info := r.id, r.info
		m.actors[id] = &actorEntry{id: id, job: r.job, info: info}
		if n, ok := nameOf(info); ok && info.GetState() != protos.ActorState_DEAD {
			if other, taken := m.names[n]; taken && other != id {
				m.env.log.Warn().Str("actor", id.Short()).Str("other", other.Short()).Str("name", n.name).Msg("two live actors with one name in the store; keeping the first")
			} else {
				m.names[n] = id
			}
		}
		return nil
	})
}

// resume schedules the actors a previous GCS left waiting for a worker,
// and attaches again to those it left ALIVE: their workers outlive the GCS
// (the raylets keep an actor's lease when the GCS's connection closes), or
// died with the head, or while no GCS was watching.
func (m *actorManager) resume() {
	for _, e := range m.actors {
		switch e.info.GetState() {
		case protos.ActorState_PENDING_CREATION, protos.ActorState_RESTARTING:
			m.schedule(e)
		case protos.ActorState_ALIVE:
			m.reattach(e)
		}
	}
}

// reattachTimeout bounds finding an ALIVE actor's worker after a GCS
// restart: the node's own report may take a moment to reach the new GCS.
const reattachTimeout = 10 * time.Second

// reattach connects to the worker an ALIVE record names. It answers
// ATTACH_ACTOR if it still hosts the actor; if it does not (its process
// died with the head, or while no GCS was watching), the actor is restarted
// within its MaxRestarts, detached or not, or dies.
func (m *actorManager) reattach(a *actorEntry) {
	a.epoch = m.shared.nextEpoch()
	id, epoch, info := a.id, a.epoch, a.info
	root, self, nodesPID, p := m.root, m.self, m.shared.nodes, m.shared.placer
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), reattachTimeout)
		defer cancel()
		inc := &incarnation{lease: info.GetLeaseId(), worker: info.GetAddress(), actor: id, epoch: epoch}
		if isPacked(info.GetSpec()) {
			// A packed actor's lease is its host's, shared with the
			// host's other actors: ending this actor must not return it.
			// (The new GCS does not pack new actors onto hosts it
			// found this way.)
			inc.lease = nil
		}
		node, err := aliveNode(ctx, root, nodesPID, info.GetNodeId())
		if err == nil {
			inc.node = node
			exited := func(reason string) { root.Send(self, actorExited{id: id, epoch: epoch, reason: reason}) }
			inc.conn, err = p.attach(ctx, node, info.GetAddress(), &protos.AttachActorRequest{ActorId: id.Bytes(), NumRestarts: info.GetNumRestarts()}, exited)
		}
		root.Send(self, actorReattached{id: id, epoch: epoch, inc: inc, err: err})
	}()
}

// aliveNode asks the node manager for a node's record, waiting while the
// node is not known, and fails if it is DEAD.
func aliveNode(ctx context.Context, root *actor.RootContext, nodesPID *actor.PID, rawID []byte) (*protos.NodeInfo, error) {
	for {
		if nodes, err := listNodes(root, nodesPID); err == nil {
			for _, n := range nodes {
				if bytes.Equal(n.GetNodeId(), rawID) {
					if n.GetState() == protos.NodeInfo_DEAD {
						return nil, fmt.Errorf("its node %x is dead", rawID)
					}
					return n, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("its node %x is not in the node table: %w", rawID, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *actorManager) reattached(msg actorReattached) {
	a := m.current(msg.id, msg.epoch)
	if a == nil {
		if msg.inc.conn != nil {
			_ = msg.inc.conn.Close()
		}
		return
	}
	pid := a.info.GetAddress().GetPid()
	if msg.err != nil {
		m.env.log.Warn().Err(msg.err).Str("actor", a.id.Short()).Str("class", a.info.GetSpec().GetClassName()).Int32("pid", pid).Msg("actor's worker gone while the GCS was down")
		// Its lease, if the worker lives on, goes back: the raylet kills it.
		a.inc = &incarnation{node: msg.inc.node, lease: msg.inc.lease}
		if msg.inc.node == nil || msg.inc.lease == nil {
			a.inc = nil
		}
		m.restartOrDie(a, fmt.Sprintf("the actor's worker process (pid %d) was not found after the GCS restarted: %v", pid, msg.err), nil)
		return
	}
	inc := msg.inc
	a.inc = inc
	m.env.log.Info().Str("actor", a.id.Short()).Str("class", a.info.GetSpec().GetClassName()).Int32("pid", pid).Msg("actor alive across the GCS restart")
	id, epoch, root, self := a.id, a.epoch, m.root, m.self
	go func() {
		<-inc.conn.Done()
		root.Send(self, actorWorkerLost{id: id, epoch: epoch})
	}()
}

func nameOf(info *protos.ActorInfo) (actorName, bool) {
	o := info.GetSpec().GetOptions()
	return actorName{namespace: o.GetNamespace(), name: o.GetName()}, o.GetName() != ""
}

// --- requests ---

func (m *actorManager) register(spec *protos.ActorSpec) (*protos.ActorInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	// The handler checked the spec (checkRegisterActor); the ids are
	// parsed again rather than assumed.
	id, bad := parseID("actor id", spec.GetActorId())
	if bad != nil {
		return nil, bad
	}
	if old, ok := m.actors[id]; ok {
		// A retried registration: the first one won.
		return old.info, nil
	}
	job, bad := parseID("job id", spec.GetJobId())
	if bad != nil {
		return nil, bad
	}
	if m.finishedJobs[job] {
		return nil, gcsErrorf(ErrInvalid, "register actor %s: job %s has finished", spec.GetClassName(), job)
	}
	n, named := nameOf(&protos.ActorInfo{Spec: spec})
	if named {
		if other, taken := m.names[n]; taken {
			if spec.GetOptions().GetGetIfExists() {
				return m.actors[other].info, nil
			}
			return nil, gcsErrorf(ErrAlreadyExists, "an actor named %q already exists in namespace %q", n.name, n.namespace)
		}
	}
	info := &protos.ActorInfo{
		ActorId: id.Bytes(),
		Spec:    proto.CloneOf(spec),
		State:   protos.ActorState_PENDING_CREATION,
	}
	// The spec, most of the record, never changes: encoded once, then
	// spliced into every write of the record.
	specJSON, err := recordjson.Marshal(info.GetSpec())
	if err != nil {
		return nil, toGcsError(fmt.Errorf("%w: encode actor spec: %w", ErrInternal, err))
	}
	record, err := recordjson.MarshalSpliced(info, "spec", specJSON)
	if err != nil {
		return nil, toGcsError(fmt.Errorf("%w: encode actor record: %w", ErrInternal, err))
	}
	if err := storePut(m.kv, id.String(), record); err != nil {
		return nil, toGcsError(err)
	}
	e := &actorEntry{id: id, job: job, info: info, specJSON: specJSON}
	m.actors[id] = e
	if named {
		m.names[n] = id
	}
	m.env.log.Info().Str("actor", id.Short()).Str("class", spec.GetClassName()).Str("name", n.name).Str("job", job.Short()).Msg("actor registered")
	m.env.publish(ActorSubject(id), info)
	m.env.publishData(SubjectActorEvents, record)
	m.schedule(e)
	return info, nil
}

func (m *actorManager) get(req *protos.GetActorRequest) (*protos.ActorInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	if len(req.GetActorId()) > 0 {
		id, e := parseID("actor id", req.GetActorId())
		if e != nil {
			return nil, e
		}
		a, ok := m.actors[id]
		if !ok {
			return nil, gcsErrorf(ErrNotFound, "actor %s does not exist", id)
		}
		return a.info, nil
	}
	if req.GetName() == "" {
		return nil, gcsErrorf(ErrInvalid, "get actor: an actor id or a name is required")
	}
	id, ok := m.names[actorName{namespace: req.GetNamespace(), name: req.GetName()}]
	if !ok {
		return nil, gcsErrorf(ErrNotFound, "no live actor named %q in namespace %q", req.GetName(), req.GetNamespace())
	}
	return m.actors[id].info, nil
}

func (m *actorManager) list(rawJob []byte) ([]*protos.ActorInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	var job protos.JobID
	if len(rawJob) > 0 {
		var e *protos.GcsError
		if job, e = parseID("job id", rawJob); e != nil {
			return nil, e
		}
	}
	out := make([]*protos.ActorInfo, 0, len(m.actors))
	for _, a := range m.actors {
		if job.IsZero() || a.job == job {
			out = append(out, a.info)
		}
	}
	sortActors(out)
	return out, nil
}

// sortActors orders by start time, actors never started last, then by id.
func sortActors(actors []*protos.ActorInfo) {
	startKey := func(a *protos.ActorInfo) int64 {
		if t := a.GetStartTimeUnixMs(); t > 0 {
			return t
		}
		return math.MaxInt64
	}
	slices.SortFunc(actors, func(a, b *protos.ActorInfo) int {
		return cmp.Or(cmp.Compare(startKey(a), startKey(b)), slices.Compare(a.GetActorId(), b.GetActorId()))
	})
}

func (m *actorManager) kill(rawID []byte, noRestart bool) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	id, e := parseID("actor id", rawID)
	if e != nil {
		return e
	}
	a, ok := m.actors[id]
	if !ok {
		return gcsErrorf(ErrNotFound, "actor %s does not exist", id)
	}
	if a.info.GetState() == protos.ActorState_DEAD {
		return nil
	}
	m.env.log.Info().Str("actor", id.Short()).Bool("no_restart", noRestart).Str("state", a.info.GetState().String()).Msg("kill actor")
	if noRestart {
		m.die(a, deathKilled, nil, killRequest(a, true, deathKilled), actorExitGrace)
	} else {
		m.restartOrDie(a, deathKilledRestart, killRequest(a, false, deathKilledRestart))
	}
	return nil
}

func killRequest(a *actorEntry, noRestart bool, reason string) *protos.KillActorRequest {
	return &protos.KillActorRequest{ActorId: a.id.Bytes(), NoRestart: noRestart, Reason: reason}
}

// deathGroupRemoved is why an actor of a removed placement group died.
const deathGroupRemoved = "its placement group was removed"

// groupRemoved kills the actors placed in a removed placement group: its
// bundles are gone, so they could never be placed again.
func (m *actorManager) groupRemoved(group protos.UniqueID) {
	if m.loadErr != nil {
		return
	}
	for _, a := range m.actors {
		st := a.info.GetSpec().GetOptions().GetStrategy()
		if a.info.GetState() == protos.ActorState_DEAD || st.GetKind() != protos.SchedulingStrategy_PLACEMENT_GROUP ||
			!bytes.Equal(st.GetPlacementGroupId(), group[:]) {
			continue
		}
		m.die(a, deathGroupRemoved, nil, killRequest(a, true, deathGroupRemoved), actorExitGrace)
	}
}

// jobFinished kills the job's actors, except detached ones.
func (m *actorManager) jobFinished(job protos.JobID) {
	if m.loadErr != nil || m.finishedJobs[job] {
		return
	}
	m.finishedJobs[job] = true
	for _, a := range m.actors {
		if a.info.GetState() == protos.ActorState_DEAD || a.info.GetSpec().GetOptions().GetDetached() || a.job != job {
			continue
		}
		m.die(a, deathJobFinished, nil, killRequest(a, true, deathJobFinished), actorExitGrace)
	}
}

// --- state transitions ---

// commit records a new ActorInfo: persisted, then announced. A store
// failure cannot undo what happened to the actor, so it is only logged.
func (m *actorManager) commit(a *actorEntry, info *protos.ActorInfo) {
	// The record and the event are the same JSON, encoded once, with the
	// spec encoded at registration.
	var record []byte
	var err error
	if a.specJSON != nil {
		record, err = recordjson.MarshalSpliced(info, "spec", a.specJSON)
	} else {
		record, err = recordjson.Marshal(info)
	}
	if err != nil {
		m.env.log.Error().Err(err).Str("actor", a.id.Short()).Msg("encode actor record")
		return
	}
	if m.kv != nil {
		if err := storePut(m.kv, a.id.String(), record); err != nil {
			m.env.log.Error().Err(err).Str("actor", a.id.Short()).Str("state", info.GetState().String()).Msg("persist actor")
		}
	}
	a.info = info
	m.env.publish(ActorSubject(a.id), info)
	m.env.publishData(SubjectActorEvents, record)
}

func canRestart(info *protos.ActorInfo) bool {
	limit := info.GetSpec().GetOptions().GetMaxRestarts()
	return limit == -1 || info.GetNumRestarts() < limit
}

// restartOrDie ends the current incarnation (asking its worker to stop
// with kill, if set) and reschedules the actor if it has restarts left.
func (m *actorManager) restartOrDie(a *actorEntry, cause string, kill *protos.KillActorRequest) {
	if !canRestart(a.info) {
		m.die(a, cause, nil, kill, actorExitGrace)
		return
	}
	old := a.inc
	a.inc = nil
	info := proto.CloneOf(a.info)
	info.State = protos.ActorState_RESTARTING
	info.NumRestarts++
	info.DeathCause = cause
	info.Address, info.LeaseId, info.NodeId = nil, nil, nil
	info.CreationError = nil
	m.env.log.Info().Str("actor", a.id.Short()).Str("class", info.GetSpec().GetClassName()).Int32("num_restarts", info.GetNumRestarts()).Str("cause", cause).Msg("restarting actor")
	m.commit(a, info)
	m.teardown(old, kill, actorExitGrace)
	a.excluded, a.backoff = nil, 0
	m.schedule(a)
}

// die marks the actor DEAD for good and frees its name.
func (m *actorManager) die(a *actorEntry, cause string, creationErr *protos.TaskErrorProto, kill *protos.KillActorRequest, grace time.Duration) {
	old := a.inc
	a.inc, a.exitReason = nil, nil
	a.epoch = m.shared.nextEpoch()
	info := proto.CloneOf(a.info)
	info.State = protos.ActorState_DEAD
	info.DeathCause = cause
	info.EndTimeUnixMs = time.Now().UnixMilli()
	if creationErr != nil {
		info.CreationError = creationErr
	}
	if n, ok := nameOf(info); ok && m.names[n] == a.id {
		delete(m.names, n)
	}
	m.env.log.Info().Str("actor", a.id.Short()).Str("class", info.GetSpec().GetClassName()).Str("cause", cause).Msg("actor dead")
	m.commit(a, info)
	m.teardown(old, kill, grace)
}

// teardown ends an incarnation in the background: the worker is asked to
// stop (kill), given grace to exit, and its lease is returned, which makes
// the raylet kill the process if it still runs.
func (m *actorManager) teardown(inc *incarnation, kill *protos.KillActorRequest, grace time.Duration) {
	if inc == nil {
		return
	}
	if inc.host != nil {
		m.leaveHost(inc, kill)
		return
	}
	p, log := m.shared.placer, m.env.log
	go func() {
		if c := inc.conn; c != nil {
			if kill != nil {
				ctx, cancel := context.WithTimeout(context.Background(), actorCallTimeout)
				if err := p.kill(ctx, c, kill); err != nil {
					log.Debug().Err(err).Msg("KILL_ACTOR")
				}
				cancel()
			}
			if grace > 0 {
				t := time.NewTimer(grace)
				select {
				case <-c.Done():
				case <-t.C:
				}
				t.Stop()
			}
			_ = c.Close()
		}
		if inc.lease != nil {
			ctx, cancel := context.WithTimeout(context.Background(), actorCallTimeout)
			if err := p.returnLease(ctx, inc.node, inc.lease); err != nil {
				log.Debug().Err(err).Msg("RETURN_WORKER_LEASE")
			}
			cancel()
		}
	}()
}

// --- scheduling ---

// defaultPlacement is what an actor needs to be placed when its options
// say nothing (Ray's num_cpus default for actors). An explicit empty
// Resources message means none.
var defaultPlacement = map[string]float64{"CPU": 1}

func placementOf(spec *protos.ActorSpec) *protos.Resources {
	if r := spec.GetOptions().GetPlacementResources(); r != nil {
		return r
	}
	return &protos.Resources{Amounts: defaultPlacement}
}

// schedule starts a new attempt to place the actor: pick a node, lease a
// dedicated worker there.
func (m *actorManager) schedule(a *actorEntry) {
	a.epoch = m.shared.nextEpoch()
	a.inc, a.exitReason = nil, nil
	if isPacked(a.info.GetSpec()) {
		m.schedulePacked(a)
		return
	}
	id, epoch := a.id, a.epoch
	spec := a.info.GetSpec()
	req := &protos.RequestWorkerLeaseRequest{
		JobId:            spec.GetJobId(),
		Resources:        placementOf(spec),
		Function:         spec.GetClassName(),
		Dedicated:        true,
		RunningResources: spec.GetOptions().GetRunningResources(),
		// The raylet keeps a detached actor's worker, and its job's state,
		// after the job's driver left.
		Detached:   spec.GetOptions().GetDetached(),
		RuntimeEnv: spec.GetOptions().GetRuntimeEnv(),
	}
	if st := spec.GetOptions().GetStrategy(); st != nil {
		req.Strategy = st
	}
	owner := spec.GetOwner().GetNodeId()
	excluded := make(map[protos.NodeID]bool, len(a.excluded))
	for n := range a.excluded {
		excluded[n] = true
	}
	root, self, nodesPID, p := m.root, m.self, m.shared.nodes, m.shared.placer
	pick := pickNodeRequest{demand: req.GetResources(), strategy: req.GetStrategy(), preferred: owner, excluded: excluded}
	go func() {
		res, err := root.RequestFuture(nodesPID, pick, actorNodesTimeout).Result()
		rep, ok := res.(pickNodeReply)
		switch {
		case err != nil:
			root.Send(self, actorLeased{id: id, epoch: epoch, err: fmt.Errorf("%w: pick a node: %w", ErrUnavailable, err)})
			return
		case !ok:
			root.Send(self, actorLeased{id: id, epoch: epoch, err: fmt.Errorf("%w: node manager answered %T", ErrInternal, res)})
			return
		case errors.Is(rep.err, scheduling.ErrUnschedulable), errors.Is(rep.err, scheduling.ErrInvalidDemand):
			root.Send(self, actorLeased{id: id, epoch: epoch, unschedulable: rep.err})
			return
		}
		node := rep.node
		if node != nil && rep.err == nil && !rep.wait {
			// The GCS decided: the raylet grants or queues, never forwards.
			req.NoSpillback = true
		} else {
			// Nothing fits now, or nowhere ever (infeasible): queue it on
			// the owner's node (or any), whose raylet reports the shape
			// and forwards the request once a node can take it.
			node = rep.fallback
		}
		if node == nil {
			root.Send(self, actorLeased{id: id, epoch: epoch})
			return
		}
		// No deadline: an infeasible or busy node keeps the request queued
		// until it can grant it; closing the placer ends the wait.
		lrep, err := p.lease(context.Background(), node, req)
		if err != nil && req.NoSpillback {
			// The node will not host it after all: its estimate goes.
			root.Send(nodesPID, unplaced{node: protos.MustUniqueID(node.GetNodeId()), demand: req.GetResources()})
		}
		if at := lrep.GetRetryAt(); err == nil && at != nil {
			// Spillback: the raylet found a node that can take it now.
			if _, cerr := checkID("retry_at", "node_id", at.GetNodeId()); cerr != nil {
				err = fmt.Errorf("%w: lease reply of node %x: %w", ErrInternal, node.GetNodeId(), cerr)
			} else {
				node, req.NoSpillback = at, true
				lrep, err = p.lease(context.Background(), node, req)
			}
		}
		root.Send(self, actorLeased{id: id, epoch: epoch, node: node, reply: lrep, err: err})
	}()
}

func (m *actorManager) retryLater(a *actorEntry) {
	a.backoff = min(max(2*a.backoff, actorRetryMin), actorRetryMax)
	// A new epoch, so a message of the abandoned attempt cannot pass for
	// the retry's.
	a.epoch = m.shared.nextEpoch()
	id, epoch, root, self, stopped := a.id, a.epoch, m.root, m.self, m.shared.stopped
	time.AfterFunc(a.backoff, func() {
		select {
		case <-stopped:
		default:
			root.Send(self, actorRetry{id: id, epoch: epoch})
		}
	})
}

func (m *actorManager) leased(msg actorLeased) {
	a := m.current(msg.id, msg.epoch)
	granted := msg.err == nil && msg.reply != nil && len(msg.reply.GetLeaseId()) > 0
	if a == nil {
		if granted {
			// The actor was killed or rescheduled while this lease was
			// pending: give the worker back (the raylet kills it).
			m.teardown(&incarnation{node: msg.node, lease: msg.reply.GetLeaseId()}, nil, 0)
		}
		return
	}
	log := m.env.log.With().Str("actor", a.id.Short()).Str("class", a.info.GetSpec().GetClassName()).Logger()
	if msg.unschedulable != nil {
		m.die(a, fmt.Sprintf("%s: %v", deathUnschedulable, msg.unschedulable), nil, nil, 0)
		return
	}
	if msg.node == nil && msg.err == nil {
		if len(a.excluded) > 0 && a.platformErr != nil {
			m.die(a, fmt.Sprintf("%s: no alive node is of a platform its job has a binary for (last: %v)", deathRuntimeEnv, a.platformErr), nil, nil, 0)
			return
		}
		if len(a.excluded) > 0 {
			m.die(a, fmt.Sprintf("no alive node can start workers for job %s (it is registered on none of them: has its driver exited?)",
				a.job), nil, nil, 0)
			return
		}
		log.Debug().Msg("no alive node to place the actor on yet")
		m.retryLater(a)
		return
	}
	if msg.err != nil {
		var nodeID protos.NodeID
		if msg.node != nil {
			nodeID = protos.MustUniqueID(msg.node.GetNodeId())
		}
		switch code := remoteCode(msg.err); code {
		case "unknown_job":
			// That raylet does not know the job: try the others.
			if a.excluded == nil {
				a.excluded = map[protos.NodeID]bool{}
			}
			a.excluded[nodeID] = true
			log.Debug().Str("node", nodeID.Short()).Msg("node cannot start the job's workers; trying another")
			m.schedule(a)
		case "job_finished":
			// The job's driver left: the raylet places only detached
			// actors of it (a non-detached actor restarting as its job
			// ends, e.g. when the driver exited without finishing it).
			m.die(a, fmt.Sprintf("%s: %v", deathJobFinished, msg.err), nil, nil, 0)
		case "platform_mismatch":
			// That node is of a platform the job has no binary for.
			if st := a.info.GetSpec().GetOptions().GetStrategy(); st.GetKind() == protos.SchedulingStrategy_NODE_AFFINITY && !st.GetSoft() {
				m.die(a, fmt.Sprintf("%s: %v", deathRuntimeEnv, msg.err), nil, nil, 0)
				return
			}
			if a.excluded == nil {
				a.excluded = map[protos.NodeID]bool{}
			}
			a.excluded[nodeID] = true
			a.platformErr = msg.err
			log.Debug().Str("node", nodeID.Short()).Msg("node is of another platform; trying another")
			m.schedule(a)
		case "runtime_env_failed":
			m.die(a, fmt.Sprintf("%s: %v", deathRuntimeEnv, msg.err), nil, nil, 0)
		case "binary_mismatch", "worker_start_failed", "invalid", "malformed", "unschedulable":
			m.die(a, fmt.Sprintf("no worker could be leased for it on node %s: %v", nodeID.Short(), msg.err), nil, nil, 0)
		default:
			log.Warn().Err(msg.err).Str("node", nodeID.Short()).Msg("lease for actor failed; retrying")
			m.retryLater(a)
		}
		return
	}
	rep := msg.reply
	if !granted {
		log.Warn().Str("infeasible", rep.GetInfeasible()).Msg("lease for actor not granted; retrying")
		m.retryLater(a)
		return
	}
	inc := &incarnation{node: msg.node, lease: rep.GetLeaseId(), worker: rep.GetWorker()}
	a.inc = inc
	id, epoch, root, self, p := a.id, a.epoch, m.root, m.self, m.shared.placer
	req := &protos.CreateActorRequest{Spec: a.info.GetSpec(), NumRestarts: a.info.GetNumRestarts()}
	go func() {
		exited := func(reason string) { root.Send(self, actorExited{id: id, epoch: epoch, reason: reason}) }
		// The constructor may run for long: no deadline, the connection
		// closing (worker death, GCS shutdown) ends the wait.
		conn, crep, err := p.create(context.Background(), inc.worker, req, exited)
		if err == nil && crep.GetError() == nil {
			ctx, cancel := context.WithTimeout(context.Background(), actorCallTimeout)
			if serr := p.started(ctx, inc.node, inc.lease); serr != nil {
				// The lease keeps its placement resources; if it is gone
				// the worker died and the connection says so.
				log.Warn().Err(serr).Msg("NOTIFY_ACTOR_STARTED")
			}
			cancel()
		}
		root.Send(self, actorCreated{id: id, epoch: epoch, inc: &incarnation{node: inc.node, lease: inc.lease, worker: inc.worker, conn: conn}, reply: crep, err: err})
	}()
}

func (m *actorManager) created(msg actorCreated) {
	a := m.current(msg.id, msg.epoch)
	if a == nil {
		m.teardown(msg.inc, nil, 0)
		return
	}
	inc := msg.inc
	a.inc = inc
	class := a.info.GetSpec().GetClassName()
	if msg.err != nil {
		if code := remoteCode(msg.err); code != "" {
			// The worker answered but could not create the actor.
			m.die(a, fmt.Sprintf("the actor's worker could not create it: %v", msg.err),
				&protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_SYSTEM, Function: class, Message: msg.err.Error(),
					Pid: inc.worker.GetPid(), NodeId: inc.worker.GetNodeId()}, nil, 0)
			return
		}
		m.env.log.Warn().Err(msg.err).Str("actor", a.id.Short()).Str("class", class).Int32("pid", inc.worker.GetPid()).Msg("actor's worker lost during creation")
		m.restartOrDie(a, fmt.Sprintf("the actor's worker process (pid %d) died while creating the actor: %v", inc.worker.GetPid(), msg.err), nil)
		return
	}
	if ce := msg.reply.GetError(); ce != nil {
		m.die(a, "the actor's constructor failed: "+ce.GetMessage(), ce, nil, 0)
		return
	}
	info := proto.CloneOf(a.info)
	info.State = protos.ActorState_ALIVE
	info.Address = inc.worker
	info.NodeId = inc.node.GetNodeId()
	info.LeaseId = inc.lease
	info.StartTimeUnixMs = time.Now().UnixMilli()
	info.CreationError = nil
	a.excluded, a.backoff = nil, 0
	m.env.log.Info().Str("actor", a.id.Short()).Str("class", class).Int32("pid", inc.worker.GetPid()).
		Str("node", protos.MustUniqueID(inc.node.GetNodeId()).Short()).Int32("num_restarts", info.GetNumRestarts()).Msg("actor alive")
	m.commit(a, info)
	id, epoch, root, self := a.id, a.epoch, m.root, m.self
	go func() {
		<-inc.conn.Done()
		root.Send(self, actorWorkerLost{id: id, epoch: epoch})
	}()
	if r := a.exitReason; r != nil {
		m.die(a, "the actor exited itself: "+*r, nil, nil, actorExitGrace)
	}
}

// pickNode chooses where to place an actor among ALIVE nodes with a raylet
// endpoint, not excluded. Preference, in order: the node could ever hold
// demand (else the lease would wait forever), it has demand available now,
// it is the owner's node (which runs the job's workers), it has the most
// available CPU; ties go to the lowest node id. nil: no candidate.
func pickNode(nodes []*protos.NodeInfo, demand map[string]float64, owner []byte, excluded map[protos.NodeID]bool) *protos.NodeInfo {
	type rank struct {
		feasible, fits, owner bool
		cpu                   float64
	}
	rankOf := func(n *protos.NodeInfo) rank {
		return rank{
			feasible: resourcesFit(n.GetTotal().GetAmounts(), demand),
			fits:     resourcesFit(n.GetAvailable().GetAmounts(), demand),
			owner:    len(owner) > 0 && slices.Equal(n.GetNodeId(), owner),
			cpu:      n.GetAvailable().GetAmounts()["CPU"],
		}
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	var best *protos.NodeInfo
	var bestRank rank
	for _, n := range nodes {
		if n.GetState() != protos.NodeInfo_ALIVE || n.GetRayletEndpoint() == "" || excluded[protos.MustUniqueID(n.GetNodeId())] {
			continue
		}
		r := rankOf(n)
		if best != nil {
			c := cmp.Or(
				cmp.Compare(b2i(r.feasible), b2i(bestRank.feasible)),
				cmp.Compare(b2i(r.fits), b2i(bestRank.fits)),
				cmp.Compare(b2i(r.owner), b2i(bestRank.owner)),
				cmp.Compare(r.cpu, bestRank.cpu),
				-slices.Compare(n.GetNodeId(), best.GetNodeId()),
			)
			if c <= 0 {
				continue
			}
		}
		best, bestRank = n, r
	}
	return best
}

// resourcesFit reports whether have covers demand (with the raylet's
// fixed-point tolerance).
func resourcesFit(have, demand map[string]float64) bool {
	for k, v := range demand {
		if v > 0 && have[k]+1e-9 < v {
			return false
		}
	}
	return true
}
