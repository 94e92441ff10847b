package gcs

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
)

// Packed actors (ActorOptions.packed, sdk.Packed) share a worker process
// with the other packed actors of their job on the node, each its own
// Proto.Actor actor there, so one node can host tens of thousands of
// actors. The trade-off is isolation: the process dying takes all its
// actors down (each restarts or dies by its own max_restarts), and they
// share its memory and CPU.
//
// Per (job, node, detached) the manager keeps a packed host: one dedicated
// lease holding no resources, and one connection to its worker shared by
// all the host's actors. Creating a packed actor sends CREATE_ACTOR on that
// connection, many in flight at once; actors placed while the host's lease
// is pending queue on it. Ending one actor sends KILL_ACTOR for it alone
// (the worker stops just that actor) and keeps the lease and the
// connection; a host that has had no actor for packedHostIdle is given back
// (its process killed by the raylet). The connection closing means the
// process died: each of its actors restarts or dies.
//
// The manager tracks what the host's worker holds (slots), so it never
// asks a worker to kill an actor it does not hold (a worker that does not
// know the actor named by KILL_ACTOR exits, taking the other actors with
// it), and never re-creates an actor there while an earlier incarnation
// of it may still exist.

// packedHostActors caps the actors on one host: past it another host is
// leased on the node. One process takes 10,000 actors well (an idle
// Proto.Actor actor holds no goroutine): on 2 cores, creating them took
// 2.5-3 s and a call to each 0.3 s, while spreading them over 4 hosts of
// 2,500 was slower (3.5 s) and over 10 hosts slower still (6 s), the new
// processes competing for the same cores. So the cap is a safety valve.
var packedHostActors = 50_000

// packedHostIdle is how long a host with no actor left keeps its lease,
// so a restart or the next batch of actors does not pay for a new process.
const packedHostIdle = 2 * time.Second

type hostKey struct {
	job      protos.JobID
	node     protos.NodeID
	detached bool
	// env is the actors' runtime env (its wire form): actors share a
	// process only with actors of the same one.
	env string
}

type hostState int

const (
	hostLeasing hostState = iota
	hostReady
	hostGone // its lease failed, its process died or it was given back
)

type slotState int

const (
	slotCreating slotState = iota // CREATE_ACTOR sent, no answer yet
	slotAlive                     // the worker holds the actor
	slotKilling                   // KILL_ACTOR sent, no answer yet
)

// hostSlot is one actor as the host's worker may hold it.
type hostSlot struct {
	epoch uint64 // the attempt it was created for
	state slotState
	// exited: the worker reported (ACTOR_EXITED) that it let the actor go.
	exited bool
}

type packedHost struct {
	id     uint64
	key    hostKey
	node   *protos.NodeInfo
	state  hostState
	lease  []byte
	worker *protos.Address
	conn   actorConn
	// actors placed on the host (waiting for it, being created or alive),
	// with the epoch of their attempt.
	actors map[protos.UniqueID]uint64
	// queue holds the actors placed while the lease is pending, in order.
	queue []protos.UniqueID
	// slots is what the worker holds or may hold, by actor id.
	slots map[protos.UniqueID]*hostSlot
	// waiting holds actors placed on the ready host whose earlier
	// incarnation there is not gone yet; created once it is.
	waiting map[protos.UniqueID]bool
	// idle tags the latest time the host became empty: only that release
	// timer applies.
	idle uint64
}

type packedHosts struct {
	open map[hostKey]*packedHost // the host new actors go to, per key
	byID map[uint64]*packedHost  // every host not gone
}

func newPackedHosts() packedHosts {
	return packedHosts{open: map[hostKey]*packedHost{}, byID: map[uint64]*packedHost{}}
}

// Messages of the packed path.
type (
	// actorPlaced: the node a packed actor's attempt goes to.
	actorPlaced struct {
		id    protos.UniqueID
		epoch uint64
		node  *protos.NodeInfo
	}
	hostLeased struct {
		host  uint64
		node  *protos.NodeInfo
		reply *protos.RequestWorkerLeaseReply
		conn  actorConn // set when the lease was granted and the worker dialed
		err   error
	}
	hostLost struct{ host uint64 }
	hostIdle struct {
		host uint64
		idle uint64
	}
	packedCreated struct {
		host  uint64
		id    protos.UniqueID
		epoch uint64
		reply *protos.CreateActorReply
		err   error
	}
	packedKilled struct {
		host uint64
		id   protos.UniqueID
		err  error
	}
	packedExited struct {
		host   uint64
		id     protos.UniqueID
		reason string
	}
)

const deathAbandoned = "its placement was abandoned"

func isPacked(spec *protos.ActorSpec) bool { return spec.GetOptions().GetPacked() }

// receivePacked handles the packed path's messages.
func (m *actorManager) receivePacked(msg any) {
	switch msg := msg.(type) {
	case actorPlaced:
		m.placed(msg)
	case hostLeased:
		m.hostLeased(msg)
	case hostLost:
		m.hostLost(msg)
	case hostIdle:
		m.hostIdle(msg)
	case packedCreated:
		m.packedCreated(msg)
	case packedKilled:
		if h := m.hosts.byID[msg.host]; h != nil {
			if msg.err != nil {
				m.env.log.Debug().Err(msg.err).Str("actor", msg.id.Short()).Msg("KILL_ACTOR on packed host")
			}
			if s := h.slots[msg.id]; s != nil && s.state == slotKilling {
				m.slotFreed(h, msg.id)
			}
		}
	case packedExited:
		m.packedExited(msg)
	}
}

// schedulePacked starts an attempt to place a packed actor: pick a node,
// then the host there (see placed). schedule has set the new epoch.
func (m *actorManager) schedulePacked(a *actorEntry) {
	id, epoch := a.id, a.epoch
	owner := a.info.GetSpec().GetOwner().GetNodeId()
	excluded := make(map[protos.NodeID]bool, len(a.excluded))
	for n := range a.excluded {
		excluded[n] = true
	}
	root, self, nodesPID := m.root, m.self, m.shared.nodes
	go func() {
		nodes, err := listNodes(root, nodesPID)
		if err != nil {
			root.Send(self, actorLeased{id: id, epoch: epoch, err: fmt.Errorf("%w: list nodes: %w", ErrUnavailable, err)})
			return
		}
		node := pickNode(nodes, nil, owner, excluded)
		if node == nil {
			root.Send(self, actorLeased{id: id, epoch: epoch})
			return
		}
		root.Send(self, actorPlaced{id: id, epoch: epoch, node: node})
	}()
}

func listNodes(root *actor.RootContext, nodesPID *actor.PID) ([]*protos.NodeInfo, error) {
	res, err := root.RequestFuture(nodesPID, &protos.ListNodesRequest{}, actorNodesTimeout).Result()
	if err != nil {
		return nil, err
	}
	rep, ok := res.(*protos.ListNodesReply)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: node manager answered %T", ErrInternal, res)
	case rep.GetError() != nil:
		return nil, replyError("list nodes", rep.GetError())
	}
	return rep.GetNodes(), nil
}

// placed puts the actor on its node's open host, leasing one if needed.
func (m *actorManager) placed(msg actorPlaced) {
	a := m.current(msg.id, msg.epoch)
	if a == nil || a.inc != nil {
		return
	}
	spec := a.info.GetSpec()
	// The node comes from the node manager's table, whose ids are checked.
	key := hostKey{job: a.job, node: protos.MustUniqueID(msg.node.GetNodeId()), detached: spec.GetOptions().GetDetached(), env: envKey(spec.GetOptions().GetRuntimeEnv())}
	h := m.hosts.open[key]
	if h == nil || len(h.actors) >= packedHostActors {
		h = m.newHost(key, msg.node, spec.GetOptions().GetRuntimeEnv())
	}
	h.idle++ // a pending release no longer applies
	h.actors[a.id] = a.epoch
	a.inc = &incarnation{node: h.node, host: h, actor: a.id, epoch: a.epoch}
	if h.state == hostLeasing {
		h.queue = append(h.queue, a.id)
		return
	}
	m.createOnHost(a, h)
}

// newHost opens a host for key and leases its worker in the background.
func (m *actorManager) newHost(key hostKey, node *protos.NodeInfo, env *protos.RuntimeEnv) *packedHost {
	h := &packedHost{id: m.shared.nextEpoch(), key: key, node: node, actors: map[protos.UniqueID]uint64{},
		slots: map[protos.UniqueID]*hostSlot{}, waiting: map[protos.UniqueID]bool{}}
	m.hosts.open[key] = h
	m.hosts.byID[h.id] = h
	m.env.log.Info().Uint64("host", h.id).Str("job", key.job.Short()).Str("node", key.node.Short()).Bool("detached", key.detached).Msg("leasing a packed actor host")
	req := &protos.RequestWorkerLeaseRequest{
		JobId:            key.job.Bytes(),
		Resources:        &protos.Resources{},
		Function:         "packed actors",
		Dedicated:        true,
		RunningResources: &protos.Resources{},
		Detached:         key.detached,
		RuntimeEnv:       env,
	}
	hid, root, self, p := h.id, m.root, m.self, m.shared.placer
	go func() {
		// No deadline, as for any actor's lease (see schedule).
		rep, err := p.lease(context.Background(), node, req)
		var conn actorConn
		if err == nil && len(rep.GetLeaseId()) > 0 {
			exited := func(actor protos.UniqueID, reason string) {
				root.Send(self, packedExited{host: hid, id: actor, reason: reason})
			}
			conn, err = p.connectHost(context.Background(), rep.GetWorker(), exited)
		}
		root.Send(self, hostLeased{host: hid, node: node, reply: rep, conn: conn, err: err})
	}()
	return h
}

// dropHost forgets a host: no actor goes to it any more.
func (m *actorManager) dropHost(h *packedHost) {
	h.state = hostGone
	delete(m.hosts.byID, h.id)
	if m.hosts.open[h.key] == h {
		delete(m.hosts.open, h.key)
	}
}

// releaseHost gives a host's worker back in the background.
func (m *actorManager) releaseHost(node *protos.NodeInfo, lease []byte, conn actorConn) {
	p, log := m.shared.placer, m.env.log
	go func() {
		if conn != nil {
			_ = conn.Close()
		}
		if lease != nil {
			ctx, cancel := context.WithTimeout(context.Background(), actorCallTimeout)
			if err := p.returnLease(ctx, node, lease); err != nil {
				log.Debug().Err(err).Msg("RETURN_WORKER_LEASE of a packed host")
			}
			cancel()
		}
	}()
}

func (m *actorManager) hostLeased(msg hostLeased) {
	granted := msg.reply != nil && len(msg.reply.GetLeaseId()) > 0
	h := m.hosts.byID[msg.host]
	if h == nil || h.state != hostLeasing {
		// A host of a previous manager instance.
		if granted {
			m.releaseHost(msg.node, msg.reply.GetLeaseId(), msg.conn)
		}
		return
	}
	if msg.err != nil || !granted {
		m.dropHost(h)
		var notGranted *protos.RequestWorkerLeaseReply
		if granted {
			// The worker could not be dialed.
			m.releaseHost(h.node, msg.reply.GetLeaseId(), msg.conn)
		} else {
			notGranted = msg.reply
		}
		// Each actor takes it as its own lease failing.
		for _, id := range h.queue {
			if a := m.onHost(h, id); a != nil {
				a.inc = nil
				m.leased(actorLeased{id: id, epoch: a.epoch, node: h.node, reply: notGranted, err: msg.err})
			}
		}
		h.queue, h.actors = nil, map[protos.UniqueID]uint64{}
		return
	}
	h.state = hostReady
	h.lease, h.worker, h.conn = msg.reply.GetLeaseId(), msg.reply.GetWorker(), msg.conn
	hid, conn, root, self := h.id, h.conn, m.root, m.self
	go func() {
		<-conn.Done()
		root.Send(self, hostLost{host: hid})
	}()
	m.env.log.Info().Uint64("host", h.id).Int32("pid", h.worker.GetPid()).Int("queued", len(h.queue)).Msg("packed actor host ready")
	queue := h.queue
	h.queue = nil
	for _, id := range queue {
		if a := m.onHost(h, id); a != nil {
			m.createOnHost(a, h)
		}
	}
	if len(h.actors) == 0 {
		m.hostEmptied(h)
	}
}

// onHost returns the actor if its current attempt is placed on h.
func (m *actorManager) onHost(h *packedHost, id protos.UniqueID) *actorEntry {
	epoch, ok := h.actors[id]
	if !ok {
		return nil
	}
	a := m.current(id, epoch)
	if a == nil || a.inc == nil || a.inc.host != h {
		return nil
	}
	return a
}

// createOnHost sends CREATE_ACTOR on the ready host's connection, unless
// an earlier incarnation of the actor may still be there.
func (m *actorManager) createOnHost(a *actorEntry, h *packedHost) {
	a.inc.worker = h.worker
	if h.slots[a.id] != nil {
		h.waiting[a.id] = true
		return
	}
	h.slots[a.id] = &hostSlot{epoch: a.epoch, state: slotCreating}
	id, epoch, hid, root, self := a.id, a.epoch, h.id, m.root, m.self
	req := &protos.CreateActorRequest{Spec: a.info.GetSpec(), NumRestarts: a.info.GetNumRestarts()}
	m.shared.placer.createOn(h.conn, req, func(rep *protos.CreateActorReply, err error) {
		root.Send(self, packedCreated{host: hid, id: id, epoch: epoch, reply: rep, err: err})
	})
}

// killOnHost asks the host's worker to stop one actor it holds.
func (m *actorManager) killOnHost(h *packedHost, s *hostSlot, req *protos.KillActorRequest) {
	s.state = slotKilling
	id := protos.MustUniqueID(req.GetActorId())
	hid, root, self := h.id, m.root, m.self
	m.shared.placer.killOn(h.conn, req, func(err error) {
		root.Send(self, packedKilled{host: hid, id: id, err: err})
	})
}

// slotFreed records that the worker no longer holds the actor, and
// creates the actor's waiting incarnation, if any.
func (m *actorManager) slotFreed(h *packedHost, id protos.UniqueID) {
	delete(h.slots, id)
	if !h.waiting[id] {
		return
	}
	delete(h.waiting, id)
	if a := m.onHost(h, id); a != nil && h.state == hostReady {
		m.createOnHost(a, h)
	}
}

// leaveHost ends a packed actor's incarnation (teardown's packed half):
// the worker is asked to stop the actor if it holds it; the host, its
// lease and its connection stay for the others.
func (m *actorManager) leaveHost(inc *incarnation, kill *protos.KillActorRequest) {
	h, id, epoch := inc.host, inc.actor, inc.epoch
	if e, ok := h.actors[id]; !ok || e != epoch {
		return
	}
	delete(h.actors, id)
	delete(h.waiting, id)
	if s := h.slots[id]; s != nil && s.epoch == epoch && s.state == slotAlive && h.state == hostReady {
		if kill == nil {
			kill = &protos.KillActorRequest{ActorId: id.Bytes(), NoRestart: true, Reason: deathAbandoned}
		}
		m.killOnHost(h, s, kill)
	}
	// A slot still creating is dealt with when its answer comes.
	if len(h.actors) == 0 {
		m.hostEmptied(h)
	}
}

// hostEmptied starts the countdown to giving an empty host back.
func (m *actorManager) hostEmptied(h *packedHost) {
	if h.state != hostReady {
		return
	}
	h.idle++
	hid, idle, root, self, stopped := h.id, h.idle, m.root, m.self, m.shared.stopped
	time.AfterFunc(packedHostIdle, func() {
		select {
		case <-stopped:
		default:
			root.Send(self, hostIdle{host: hid, idle: idle})
		}
	})
}

func (m *actorManager) hostIdle(msg hostIdle) {
	h := m.hosts.byID[msg.host]
	if h == nil || h.state != hostReady || h.idle != msg.idle || len(h.actors) > 0 {
		return
	}
	m.env.log.Info().Uint64("host", h.id).Int32("pid", h.worker.GetPid()).Msg("giving back an idle packed actor host")
	m.dropHost(h)
	m.releaseHost(h.node, h.lease, h.conn)
}

func (m *actorManager) hostLost(msg hostLost) {
	h := m.hosts.byID[msg.host]
	if h == nil {
		return
	}
	pid := h.worker.GetPid()
	log := m.env.log.Debug()
	if len(h.actors) > 0 {
		log = m.env.log.Warn()
	}
	log.Uint64("host", h.id).Int32("pid", pid).Int("actors", len(h.actors)).Msg("packed actor host's worker died")
	m.dropHost(h)
	m.releaseHost(h.node, h.lease, nil)
	cause := fmt.Sprintf("the actor's worker process (pid %d, a packed host) died", pid)
	for id := range h.actors {
		a := m.onHost(h, id)
		if a == nil {
			continue
		}
		if s := h.slots[id]; s == nil || s.epoch != a.epoch {
			// Never sent to the dead worker: place it again, as new.
			a.inc = nil
			m.schedule(a)
			continue
		}
		m.restartOrDie(a, cause, nil)
	}
	h.actors, h.slots, h.waiting = map[protos.UniqueID]uint64{}, map[protos.UniqueID]*hostSlot{}, map[protos.UniqueID]bool{}
}

func (m *actorManager) packedCreated(msg packedCreated) {
	h := m.hosts.byID[msg.host]
	if h == nil {
		// The host is gone; so is whatever its worker held.
		if a := m.current(msg.id, msg.epoch); a != nil && a.inc != nil && a.inc.host != nil && a.inc.host.id == msg.host {
			m.restartOrDie(a, fmt.Sprintf("the actor's worker process (pid %d, a packed host) died while creating the actor", a.inc.worker.GetPid()), nil)
		}
		return
	}
	s := h.slots[msg.id]
	if s == nil || s.epoch != msg.epoch || s.state != slotCreating {
		return
	}
	held := msg.err == nil && msg.reply.GetError() == nil
	a := m.onHost(h, msg.id)
	if a != nil && a.epoch != msg.epoch {
		a = nil
	}
	switch {
	case !held || s.exited:
		m.slotFreed(h, msg.id)
	case a == nil:
		// Killed or rescheduled while its constructor ran.
		m.killOnHost(h, s, &protos.KillActorRequest{ActorId: msg.id.Bytes(), NoRestart: true, Reason: deathAbandoned})
	default:
		s.state = slotAlive
	}
	if a == nil {
		return
	}
	class := a.info.GetSpec().GetClassName()
	if msg.err != nil {
		if code := remoteCode(msg.err); code != "" {
			m.die(a, fmt.Sprintf("the actor's worker could not create it: %v", msg.err),
				&protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_SYSTEM, Function: class, Message: msg.err.Error(),
					Pid: h.worker.GetPid(), NodeId: h.worker.GetNodeId()}, nil, 0)
			return
		}
		// The connection closed: hostLost restarts the host's actors. This
		// one may have been counted out of it already.
		m.restartOrDie(a, fmt.Sprintf("the actor's worker process (pid %d, a packed host) died while creating the actor: %v", h.worker.GetPid(), msg.err), nil)
		return
	}
	if ce := msg.reply.GetError(); ce != nil {
		m.die(a, "the actor's constructor failed: "+ce.GetMessage(), ce, nil, 0)
		return
	}
	info := proto.CloneOf(a.info)
	info.State = protos.ActorState_ALIVE
	info.Address = h.worker
	info.NodeId = h.node.GetNodeId()
	info.LeaseId = h.lease
	info.StartTimeUnixMs = time.Now().UnixMilli()
	info.CreationError = nil
	a.excluded, a.backoff = nil, 0
	m.env.log.Debug().Str("actor", a.id.Short()).Str("class", class).Int32("pid", h.worker.GetPid()).Int32("num_restarts", info.GetNumRestarts()).Msg("packed actor alive")
	m.commit(a, info)
	if r := a.exitReason; r != nil {
		m.die(a, "the actor exited itself: "+*r, nil, nil, 0)
	}
}

func (m *actorManager) packedExited(msg packedExited) {
	h := m.hosts.byID[msg.host]
	if h == nil {
		return
	}
	s := h.slots[msg.id]
	if s == nil {
		return
	}
	epoch := s.epoch
	switch s.state {
	case slotCreating:
		s.exited = true
	default:
		m.slotFreed(h, msg.id)
	}
	a := m.onHost(h, msg.id)
	if a == nil || a.epoch != epoch {
		return
	}
	if a.info.GetState() != protos.ActorState_ALIVE {
		reason := msg.reason
		a.exitReason = &reason
		return
	}
	m.die(a, "the actor exited itself: "+msg.reason, nil, nil, 0)
}

// envKey is a runtime env's wire form, to compare envs by.
func envKey(e *protos.RuntimeEnv) string {
	if e == nil {
		return ""
	}
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	return string(data)
}
