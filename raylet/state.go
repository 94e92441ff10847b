package raylet

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet/scheduling"
)

// Messages to the raylet actor.
type (
	wireRequest struct {
		conn *wire.Conn
		req  *wire.Request
	}
	connClosed   struct{ conn *wire.Conn }
	workerExited struct {
		w   *workerProc
		err error
		// kernelOOM: the process died of SIGKILL while the kernel's OOM
		// kill counters grew (memory_usage.go).
		kernelOOM bool
	}
	reportTick    struct{}
	nodeInfoQuery struct{}
	// workersQuery asks for the node's worker processes (goray list
	// workers).
	workersQuery struct{}
	// clientsQuery asks for the connections of the node's registered
	// drivers and workers (goray memory asks each for its object table).
	clientsQuery struct{}
	shutdownMsg  struct{}
	// jobLoaded brings the GCS's record of a job this node did not know
	// (its driver runs on another node) or why it could not be had.
	jobLoaded struct {
		id   protos.JobID
		info *protos.JobInfo
		err  error
	}
	// jobFinished says a job's driver, on another node, finished.
	jobFinished struct{ id protos.JobID }
)

type jobState struct {
	id         protos.JobID
	executable string
	env        []string
	dir        string
	digest     string
	// binaryDigest is the SHA-256 of executable: workers start only from
	// a file with this content.
	binaryDigest string
	driver       *wire.Conn
	driverID     protos.WorkerID
	workers      map[protos.WorkerID]*workerProc
	starting     int
	// reserved counts workers started for actors (see workerProc.reserved).
	reserved int
	// failures counts workers that died before registering in a row;
	// fatal is set once the job's workers cannot start at all.
	failures  int
	fatal     error
	fatalCode string
	// driverGone is set once the driver disconnected: the job is over,
	// but its detached actors outlive it. Only their leases (dedicated and
	// detached) are served, the job's other workers are killed, and the
	// job is forgotten once nothing of it has run or waited on the node
	// for Config.FinishedJobLinger (see sweepJobs). idleSince is when
	// that idle time began (zero while something runs or waits).
	driverGone bool
	idleSince  time.Time
	// remote is set for a job whose driver runs on another node: the
	// raylet learned it from the GCS when a lease was first asked for it.
	remote bool
	// binaries are the builds of the job's program (one per platform),
	// runtimeEnv what its workers get unless a lease asks otherwise, and
	// envs the runtime envs of its leases on this node (runtime_env.go).
	binaries   []*protos.JobBinary
	runtimeEnv *protos.RuntimeEnv
	envs       map[string]*runtimeEnv
	// defaultEnvKey is runtimeEnv's key: a lease asking for an equal env
	// gets the job's workers (a worker's tasks carry its env).
	defaultEnvKey string
	// binState says whether binPath, the job's binary for this node in
	// the runtime env cache, is ready (binErr when it failed).
	binState prepState
	binPath  string
	binErr   error
	// prestarts are workers to start once the job's own env is ready.
	prestarts int
}

// CodeJobFinished is the error code of a lease request the raylet refuses
// because the job's driver left: only detached actors of it are placed.
const CodeJobFinished = "job_finished"

type leaseState struct {
	id     protos.LeaseID
	worker *workerProc
	// demand is what the lease holds: its request, or, for a dedicated
	// lease whose actor started, the actor's running resources.
	demand  ResourceSet
	blocked bool
	owner   *wire.Conn
	// dedicated leases host an actor (see RequestWorkerLeaseRequest).
	dedicated bool
	// running is what a dedicated lease holds once its actor started.
	running ResourceSet
	started bool
	// detached leases host a detached actor (dedicated only): their
	// worker outlives the job's driver.
	detached bool
	// seq orders leases by grant (the memory monitor kills the newest).
	seq uint64
	// retriable: the owner may retry the lease's tasks (the memory
	// monitor kills their workers first).
	retriable bool
}

// held is what the lease takes from the node's available resources: a
// blocked lease has lent its CPU back.
func (l *leaseState) held() ResourceSet {
	if !l.blocked {
		return l.demand
	}
	d := l.demand.Clone()
	delete(d, CPU)
	return d
}

type leaseRequest struct {
	conn       *wire.Conn
	req        *wire.Request
	job        protos.JobID
	demand     ResourceSet
	function   string
	infeasible bool
	queuedAt   time.Time
	dedicated  bool
	running    ResourceSet
	detached   bool
	// strategy is where the lease may go (nil: DEFAULT); noSpillback marks
	// a request another raylet forwarded here, which stays here.
	strategy    *protos.SchedulingStrategy
	noSpillback bool
	// preferred is the node holding the task's large arguments (hex).
	preferred string
	retriable bool
	// envKey and env are the runtime env the lease's worker must have
	// (key "": the job's).
	envKey string
	env    *protos.RuntimeEnv
}

// state is the raylet actor.
type state struct {
	r         *Raylet
	total     ResourceSet
	available ResourceSet
	jobs      map[protos.JobID]*jobState
	workers   map[protos.WorkerID]*workerProc
	leases    map[protos.LeaseID]*leaseState
	queue     []*leaseRequest
	startTime time.Time
	stopping  bool
	// peers is the cluster resource view (cluster_view.go); spreadIndex
	// is the SPREAD policy's round-robin cursor.
	peers       map[protos.NodeID]*peerNode
	spreadIndex int
	// jobWaits holds lease requests for jobs being looked up in the GCS.
	jobWaits map[protos.JobID][]*leaseRequest
	// groups are the placement group bundles reserved here (bundles.go);
	// removedGroups the groups removed lately, by id (hex).
	groups        map[protos.UniqueID]*groupBundles
	removedGroups map[string]time.Time
	removedOrder  []string
	// lastEager is when reportSoon last reported.
	lastEager time.Time
	// now is the clock of the job bookkeeping (tests set it).
	now func() time.Time
	// grantSeq numbers leases as they are granted (leaseState.seq).
	grantSeq uint64
	// The memory monitor's (memory_monitor.go): the worker it killed last,
	// until that process exits; when it last said there was nothing to
	// kill; why workers died (bounded, oldest first in deathOrder), for
	// their owners' GET_WORKER_FAILURE_CAUSE; the workers retired but not
	// reaped yet; and the questions waiting for such a worker's exit.
	oomVictim *workerProc
	// oomFreshFrom is the first memory reading taken after the last
	// victim exited: older ones are stale.
	oomFreshFrom uint64
	lastNoVictim time.Time
	deaths       map[protos.WorkerID]*protos.GetWorkerFailureCauseReply
	deathOrder   []protos.WorkerID
	dying        map[protos.WorkerID]*workerProc
	causeWaiters map[protos.WorkerID][]causeWaiter
}

func newState(r *Raylet) *state {
	return &state{
		r:         r,
		total:     r.cfg.Resources.Clone(),
		available: r.cfg.Resources.Clone(),
		jobs:      map[protos.JobID]*jobState{},
		workers:   map[protos.WorkerID]*workerProc{},
		leases:    map[protos.LeaseID]*leaseState{},
		startTime: time.Now(),
		now:       time.Now,
	}
}

func (s *state) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case wireRequest:
		s.handle(m.conn, m.req)
	case connClosed:
		s.connClosed(m.conn)
	case workerExited:
		s.workerExited(m.w, m.err, m.kernelOOM)
	case memoryPressure:
		s.memoryPressure(m.usage, m.seq)
	case causeTimeout:
		s.answerCause(m.id)
	case reportTick:
		s.sweepJobs(s.now(), s.waitingJobs())
		s.forgetSilentPeers(s.now())
		s.report()
	case nodeInfoQuery:
		ctx.Respond(s.nodeInfo())
	case workersQuery:
		ctx.Respond(s.listWorkers())
	case clientsQuery:
		ctx.Respond(s.clients())
	case shutdownMsg:
		s.shutdown()
		ctx.Respond(true)
	case peerUpdate:
		s.updatePeer(m.info)
		s.dispatch()
	case peerRemoved:
		s.removePeer(m.id)
		s.dispatch()
	case jobLoaded:
		s.jobLoaded(m.id, m.info, m.err)
		s.dispatch()
	case envPrepared:
		s.envPrepared(m)
		s.dispatch()
	case groupRemovedMsg:
		s.groupRemoved(m.id)
		s.dispatch()
	case jobFinished:
		if j, ok := s.jobs[m.id]; ok && j.remote && !j.driverGone {
			s.driverLeft(j)
			s.dispatch()
		}
	}
}

func (s *state) handle(c *wire.Conn, req *wire.Request) {
	if s.stopping {
		_ = c.ReplyError(req, wire.NewError("shutting_down", "raylet is shutting down"))
		return
	}
	if err := s.serve(c, req); err != nil {
		s.r.reject(c, req, err)
	}
	s.dispatch()
}

// serve decodes, validates (validate.go) and runs one request; an error
// is answered to the peer.
func (s *state) serve(c *wire.Conn, req *wire.Request) error {
	switch req.Method {
	case protos.Method_REGISTER_CLIENT:
		var m protos.RegisterClientRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		return s.registerClient(c, req, &m)
	case protos.Method_REGISTER_WORKER:
		var m protos.RegisterWorkerRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		return s.registerWorker(c, req, &m)
	case protos.Method_REQUEST_WORKER_LEASE:
		var m protos.RequestWorkerLeaseRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		return s.requestLease(c, req, &m)
	case protos.Method_RETURN_WORKER_LEASE:
		var m protos.ReturnWorkerLeaseRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		id, err := parseID("lease_id", m.GetLeaseId())
		if err != nil {
			return err
		}
		s.returnLease(id, m.GetDisconnectWorker())
		_ = c.Reply(req, &protos.ReturnWorkerLeaseReply{})
	case protos.Method_NOTIFY_ACTOR_STARTED:
		var m protos.NotifyActorStartedRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		id, err := parseID("lease_id", m.GetLeaseId())
		if err != nil {
			return err
		}
		if err := s.actorStarted(id); err != nil {
			return err
		}
		_ = c.Reply(req, &protos.NotifyActorStartedReply{})
	case protos.Method_NOTIFY_BLOCKED:
		var m protos.NotifyBlockedRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		id, err := parseID("lease_id", m.GetLeaseId())
		if err != nil {
			return err
		}
		s.setBlocked(id, m.GetBlocked())
		// Workers send it one-way; a caller that asks still gets an
		// answer, an empty one (the method has no reply message).
		_ = c.Reply(req, nil)
	case protos.Method_KILL_WORKER:
		var m protos.KillWorkerRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		id, err := parseID("worker_id", m.GetWorkerId())
		if err != nil {
			return err
		}
		if w, ok := s.workers[id]; ok {
			s.r.cfg.Logger.Info().Str("worker", w.id.Short()).Str("reason", m.GetReason()).Msg("killing worker on request")
			w.kill()
		}
		_ = c.Reply(req, &protos.KillWorkerReply{})
	case protos.Method_PREPARE_BUNDLES:
		var m protos.PrepareBundlesRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		if err := s.prepareBundles(&m); err != nil {
			return err
		}
		_ = c.Reply(req, &protos.PrepareBundlesReply{})
	case protos.Method_COMMIT_BUNDLES:
		var m protos.CommitBundlesRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		if err := s.commitBundles(&m); err != nil {
			return err
		}
		_ = c.Reply(req, &protos.CommitBundlesReply{})
		s.reportSoon() // the cluster learns the group's resources
	case protos.Method_CANCEL_BUNDLES:
		var m protos.CancelBundlesRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		if err := s.cancelBundles(&m); err != nil {
			return err
		}
		_ = c.Reply(req, &protos.CancelBundlesReply{})
		s.reportSoon()
	case protos.Method_GET_WORKER_FAILURE_CAUSE:
		var m protos.GetWorkerFailureCauseRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		id, err := parseID("worker_id", m.GetWorkerId())
		if err != nil {
			return err
		}
		s.failureCause(c, req, id)
	case protos.Method_GET_NODE_INFO:
		var m protos.GetNodeInfoRequest
		if err := decode(req, &m); err != nil {
			return err
		}
		_ = c.Reply(req, &protos.GetNodeInfoReply{Node: s.nodeInfo()})
	default:
		return wire.NewError("unsupported", "raylet does not serve %v", req.Method)
	}
	return nil
}

// decode unmarshals a request's payload into the method's message.
func decode(req *wire.Request, m proto.Message) error {
	if err := proto.Unmarshal(req.Payload, m); err != nil {
		return malformed(err)
	}
	return nil
}

func (s *state) registerClient(c *wire.Conn, req *wire.Request, m *protos.RegisterClientRequest) error {
	id, driverID, err := checkRegisterClient(m)
	if err == nil {
		err = registeredAs(c)
	}
	if err != nil {
		return RequestError(protos.Method_REGISTER_CLIENT, err)
	}
	if m.GetExecutable() == "" {
		return wire.NewError("invalid", "register client: executable is required")
	}
	if m.GetBinaryDigest() == "" {
		return wire.NewError("invalid", "register client: the executable's binary digest is required")
	}
	j := s.jobs[id]
	if j == nil {
		j = &jobState{id: id, workers: map[protos.WorkerID]*workerProc{}}
		s.jobs[id] = j
	} else {
		// The job registers again (its driver starting over): it keeps
		// the workers it has, detached actors' among them.
		j.driverGone, j.idleSince = false, time.Time{}
		j.failures, j.fatal, j.fatalCode = 0, nil, ""
	}
	j.executable, j.env, j.dir, j.digest, j.driver = m.GetExecutable(), m.GetEnv(), m.GetWorkingDir(), m.GetFunctionDigest(), c
	j.binaryDigest = m.GetBinaryDigest()
	j.setRuntime(m.GetBinaries(), m.GetRuntimeEnv(), s.r.cfg.Platform)
	if !driverID.IsZero() {
		j.driverID = driverID
	}
	c.SetValue(j)
	_ = c.Reply(req, &protos.RegisterClientReply{Node: s.nodeInfo()})
	// Prestart workers so the first tasks do not wait for process start.
	n := int(s.total.Get(CPU))
	if n < 1 {
		n = 1
	}
	if n > s.r.cfg.MaxWorkers {
		n = s.r.cfg.MaxWorkers
	}
	j.prestarts = n
	s.prestart(j)
	return nil
}

// registeredAs refuses a second registration on a connection: the
// connection's end is what ends the job or retires the worker it was
// registered for, so it cannot stand for two.
func registeredAs(c *wire.Conn) error {
	switch v := c.Value().(type) {
	case *jobState:
		return fmt.Errorf("%w: this connection already registered the driver of job %s", ErrInvalidRequest, v.id.Short())
	case *workerProc:
		return fmt.Errorf("%w: this connection already registered worker %s", ErrInvalidRequest, v.id.Short())
	}
	return nil
}

func (s *state) registerWorker(c *wire.Conn, req *wire.Request, m *protos.RegisterWorkerRequest) error {
	id, jobID, err := checkRegisterWorker(m)
	if err != nil {
		return RequestError(protos.Method_REGISTER_WORKER, err)
	}
	w, ok := s.workers[id]
	if !ok {
		return wire.NewError("unknown_worker", "worker %s (pid %d) was not started by this raylet", id.Short(), m.GetPid())
	}
	switch j := w.job; {
	case w.registered:
		// Counted once: a second registration would take the job's
		// count of starting workers below zero.
		err = invalidFieldf("worker_id", "worker %s is registered already", id.Short())
	case !jobID.IsZero() && jobID != j.id:
		err = invalidFieldf("job_id", "worker %s registers for job %s but was started for job %s", id.Short(), jobID.Short(), j.id.Short())
	default:
		err = registeredAs(c)
	}
	if err != nil {
		return RequestError(protos.Method_REGISTER_WORKER, err)
	}
	j := w.job
	if j.digest != "" && m.GetFunctionDigest() != j.digest {
		err := fmt.Errorf("worker binary %s registers functions with digest %s but the driver's is %s: the binary changed since the driver started", j.executable, m.GetFunctionDigest(), j.digest)
		s.failJob(j, "binary_mismatch", err)
		w.kill()
		return wire.NewError("binary_mismatch", "%v", err)
	}
	w.registered = true
	w.endpoint = m.GetEndpoint()
	w.tcpEndpoint = m.GetTcpEndpoint()
	w.conn = c
	c.SetValue(w)
	j.starting--
	j.failures = 0
	_ = c.Reply(req, &protos.RegisterWorkerReply{Node: s.nodeInfo()})
	return nil
}

func (s *state) requestLease(c *wire.Conn, req *wire.Request, m *protos.RequestWorkerLeaseRequest) error {
	d, err := checkLeaseRequest(m)
	if err != nil {
		return RequestError(protos.Method_REQUEST_WORKER_LEASE, err)
	}
	job, demand := d.job, d.demand
	lr := &leaseRequest{conn: c, req: req, job: job, demand: demand, function: m.GetFunction(), queuedAt: time.Now(),
		dedicated: m.GetDedicated(), running: d.running, detached: m.GetDetached(),
		strategy: m.GetStrategy(), noSpillback: m.GetNoSpillback(), retriable: m.GetRetriable() && !m.GetDedicated(),
		env: m.GetRuntimeEnv()}
	lr.envKey = runtimeEnvKey(lr.env)
	if p := d.preferred; !p.IsZero() && p != s.r.cfg.NodeID {
		lr.preferred = p.String()
	}
	if lr.strategy != nil {
		// Validate now, so a bad strategy fails at once rather than when
		// dispatch first considers it.
		if _, err := scheduling.StrategyFromProto(lr.strategy, 0); err != nil {
			return RequestError(protos.Method_REQUEST_WORKER_LEASE, invalidField("strategy", err))
		}
	}
	j, ok := s.jobs[job]
	if !ok {
		if s.r.cfg.LookupJob == nil {
			return wire.NewError("unknown_job", "lease request for job %s, which is not registered on this node", job.Short())
		}
		s.awaitJob(job, lr)
		return nil
	}
	if err := refusedAfterDriver(j, lr); err != nil {
		return err
	}
	s.queue = append(s.queue, lr)
	s.r.cfg.Logger.Debug().Str("function", m.GetFunction()).Str("demand", demand.String()).Bool("dedicated", m.GetDedicated()).Bool("detached", lr.detached).Int("queued", len(s.queue)).Msg("lease requested")
	return nil
}

// dispatch grants queued lease requests that fit, in arrival order, and
// starts workers where requests wait only for a process.
func (s *state) dispatch() {
	if s.stopping {
		return
	}
	s.releaseReservations()
	var avail ResourceSet
	if len(s.queue) > 0 {
		avail = s.available.Clone()
	}
	wantWorkers := map[poolKey]int{}
	wantDedicated := map[poolKey]int{}
	kept := s.queue[:0]
	for _, lr := range s.queue {
		if isClosed(lr.conn) {
			continue
		}
		j := s.jobs[lr.job]
		if j == nil {
			_ = lr.conn.ReplyError(lr.req, wire.NewError("unknown_job", "job %s finished", lr.job.Short()))
			continue
		}
		if j.fatal != nil {
			_ = lr.conn.ReplyError(lr.req, wire.NewError(j.fatalCode, "%v", j.fatal))
			continue
		}
		if err := refusedAfterDriver(j, lr); err != nil {
			_ = lr.conn.ReplyError(lr.req, err)
			continue
		}
		if lr.envKey != "" && lr.envKey == j.defaultEnvKey {
			lr.envKey, lr.env = "", nil
		}
		e := j.envFor(lr.envKey, lr.env)
		if j.binState == prepFailed {
			_ = lr.conn.ReplyError(lr.req, j.binErr)
			continue
		}
		if e.state == prepFailed {
			_ = lr.conn.ReplyError(lr.req, e.err)
			continue
		}
		switch s.place(j, lr, avail) {
		case placeSpilled, placeFailed:
			continue
		case placeInfeasible:
			if !lr.infeasible {
				lr.infeasible = true
				s.r.cfg.Logger.Warn().Str("function", lr.function).Str("demand", lr.demand.String()).Str("node_total", s.total.String()).Int("other_nodes", len(s.peers)).
					Msgf("infeasible task: no node can ever provide %s (here: %s); it waits until one joins", lr.demand, s.total.Missing(lr.demand))
			}
			kept = append(kept, lr)
			continue
		case placeWait:
			lr.infeasible = false
			kept = append(kept, lr)
			continue
		}
		lr.infeasible = false
		var w *workerProc
		if lr.dedicated {
			w = s.freshWorker(j, e)
		} else {
			w = s.idleWorker(j, e)
		}
		if w == nil {
			avail.Sub(lr.demand)
			k := poolKey{j, e}
			wantWorkers[k]++
			if lr.dedicated {
				wantDedicated[k]++
			}
			kept = append(kept, lr)
			continue
		}
		s.grant(lr, w)
		avail.Sub(lr.demand)
	}
	for i := len(kept); i < len(s.queue); i++ {
		s.queue[i] = nil
	}
	s.queue = kept
	for k, n := range wantWorkers {
		s.startWanted(k, n, wantDedicated[k])
	}
	s.resetFailedEnvs()
	waiting := s.waitingJobs()
	for _, j := range s.jobs {
		if j.driverGone {
			s.trimFinishedJob(j, waiting[j.id].detached)
		}
	}
	s.sweepJobs(s.now(), waiting)
}

// poolKey names a job's pool of workers with one runtime env.
type poolKey struct {
	j *jobState
	e *runtimeEnv
}

// startWanted starts workers of k for n waiting requests (dedicated of
// them for actors), once the job's binary and the env's package are on
// the node. Workers are capped per job (MaxWorkers, actors' aside): when
// the cap is reached by idle workers of the job's other envs, those make
// room.
func (s *state) startWanted(k poolKey, n, dedicated int) {
	j, e := k.j, k.e
	ready, err := s.prepare(j, e)
	if err != nil {
		if j.binState == prepNone {
			// No build for this node's platform: that will not change.
			// (A failed fetch is answered to its requests by dispatch
			// and tried again.)
			s.failJob(j, CodePlatformMismatch, err)
		}
		return
	}
	if !ready {
		return
	}
	pool, tasksStarting, actorsStarting, stopping := 0, 0, 0, 0
	var idleElsewhere []*workerProc
	for _, w := range j.workers {
		switch {
		case w.dedicated:
		case w.reserved:
			if !w.registered && w.env == e {
				actorsStarting++
			}
		default:
			pool++
			if !w.registered && w.env == e {
				tasksStarting++
			}
			switch {
			case w.killed:
				stopping++
			case w.env != e && w.registered && len(w.leases) == 0:
				idleElsewhere = append(idleElsewhere, w)
			}
		}
	}
	forTasks, forActors := workersToStart(s.r.cfg.MaxWorkers, pool, n-dedicated, tasksStarting, dedicated, actorsStarting)
	if short := min(n-dedicated-tasksStarting-stopping, len(idleElsewhere)) - forTasks; short > 0 {
		for _, w := range idleElsewhere[:short] {
			s.r.cfg.Logger.Debug().Str("job", j.id.Short()).Str("worker", w.id.Short()).Msg("stopping an idle worker of another runtime env to make room")
			w.kill()
		}
	}
	for ; forActors > 0; forActors-- {
		if w := s.startWorker(j, e, true); w == nil {
			break
		}
	}
	for ; forTasks > 0; forTasks-- {
		if w := s.startWorker(j, e, false); w == nil {
			break
		}
	}
}

// jobWaiting is what a job's queued lease requests ask for.
type jobWaiting struct{ any, detached bool }

// waitingJobs says which jobs have lease requests queued, and which of
// them wait for a detached actor's worker.
func (s *state) waitingJobs() map[protos.JobID]jobWaiting {
	m := map[protos.JobID]jobWaiting{}
	for _, lr := range s.queue {
		w := m[lr.job]
		w.any = true
		w.detached = w.detached || lr.detached
		m[lr.job] = w
	}
	return m
}

// refusedAfterDriver is the error for a lease request of a job whose
// driver left, unless it is a detached actor's: those are still served.
func refusedAfterDriver(j *jobState, lr *leaseRequest) error {
	if !j.driverGone || (lr.dedicated && lr.detached) {
		return nil
	}
	what := "task"
	if lr.dedicated {
		what = "non-detached actor"
	}
	return wire.NewError(CodeJobFinished, "lease request for %s %s of job %s, whose driver has left this node: only detached actors of a finished job are placed",
		what, lr.function, j.id.Short())
}

// keepAfterDriver says whether a worker of a job whose driver left stays
// alive: a detached actor's does, and so does one started for an actor
// while a detached actor of the job waits for a process. Task workers and
// non-detached actors' workers end with the job.
func keepAfterDriver(w *workerProc, detachedWaiting bool) bool {
	switch {
	case w.detached:
		return true
	case w.dedicated || w.killed:
		return false
	default:
		return w.reserved && detachedWaiting
	}
}

// trimFinishedJob kills the workers of a job whose driver left that the
// job's detached actors do not need (see keepAfterDriver).
func (s *state) trimFinishedJob(j *jobState, detachedWaiting bool) {
	for _, w := range j.workers {
		if w.killed || keepAfterDriver(w, detachedWaiting) {
			continue
		}
		s.r.cfg.Logger.Debug().Str("job", j.id.Short()).Str("worker", w.id.Short()).Int("pid", w.pid).Bool("actor", w.dedicated).Msg("job finished; stopping its worker")
		w.kill()
	}
}

// keepFinishedJob decides whether a job whose driver left is still known
// at now: while something of it runs or waits on the node (busy), and for
// linger after that stopped. idle is the new start of its idle time.
func keepFinishedJob(busy bool, idleSince, now time.Time, linger time.Duration) (keep bool, idle time.Time) {
	if busy {
		return true, time.Time{}
	}
	if idleSince.IsZero() {
		idleSince = now
	}
	return now.Sub(idleSince) < linger, idleSince
}

// sweepJobs forgets the jobs whose driver left that keepFinishedJob no
// longer keeps; lease requests for them then fail with unknown_job.
func (s *state) sweepJobs(now time.Time, waiting map[protos.JobID]jobWaiting) {
	for id, j := range s.jobs {
		if !j.driverGone {
			continue
		}
		keep, idle := keepFinishedJob(len(j.workers) > 0 || waiting[id].any, j.idleSince, now, s.r.cfg.FinishedJobLinger)
		j.idleSince = idle
		if !keep {
			s.r.cfg.Logger.Debug().Str("job", id.Short()).Msg("forgetting finished job")
			delete(s.jobs, id)
			go s.r.envCache.release(id)
		}
	}
}

// workersToStart decides how many processes to start for a job: one per
// actor waiting only for a process, beyond those already starting for
// actors; and task workers for waiting tasks, beyond those already
// starting, while the task pool (workers that are neither an actor's nor
// reserved for one) stays within MaxWorkers. Actors' workers do not count
// against MaxWorkers, so actors and tasks never wait for each other's
// processes.
func workersToStart(maxWorkers, pool, tasksWaiting, tasksStarting, actorsWaiting, actorsStarting int) (forTasks, forActors int) {
	forActors = max(0, actorsWaiting-actorsStarting)
	forTasks = max(0, min(tasksWaiting-tasksStarting, maxWorkers-pool))
	return forTasks, forActors
}

// releaseReservations gives the workers started for actors to the task
// pool once no actor of their job waits for a process any more (its
// request was granted elsewhere, or abandoned).
func (s *state) releaseReservations() {
	var waiting map[protos.JobID]bool
	for _, lr := range s.queue {
		if lr.dedicated {
			if waiting == nil {
				waiting = map[protos.JobID]bool{}
			}
			waiting[lr.job] = true
		}
	}
	for id, j := range s.jobs {
		if j.reserved == 0 || waiting[id] {
			continue
		}
		for _, w := range j.workers {
			w.unreserve()
		}
	}
}

// freshWorker picks a worker for a dedicated lease: registered, not
// dedicated already, and holding no lease at all (not even a blocked one),
// so the actor gets the process to itself. A worker started for an actor
// is preferred, then the longest-lived, as in idleWorker.
func (s *state) freshWorker(j *jobState, e *runtimeEnv) *workerProc {
	var best *workerProc
	for _, w := range j.workers {
		if !w.registered || w.dead || w.killed || w.dedicated || len(w.leases) > 0 || w.env != e {
			continue
		}
		// Workers started for actors first: the others are the tasks'.
		if best == nil || (w.reserved && !best.reserved) || (w.reserved == best.reserved && w.startedAt.Before(best.startedAt)) {
			best = w
		}
	}
	return best
}

// idleWorker picks a registered worker of the job with no running lease. A
// worker whose leases are all blocked in Get counts as idle: its process
// runs the new lease's tasks beside the blocked ones.
func (s *state) idleWorker(j *jobState, e *runtimeEnv) *workerProc {
	var best *workerProc
	for _, w := range j.workers {
		if !w.registered || w.dead || w.killed || w.dedicated || w.reserved || w.active > 0 || w.env != e {
			continue
		}
		// Prefer a worker with no leases at all, then the longest-lived.
		if best == nil || len(w.leases) < len(best.leases) || (len(w.leases) == len(best.leases) && w.startedAt.Before(best.startedAt)) {
			best = w
		}
	}
	return best
}

func (s *state) grant(lr *leaseRequest, w *workerProc) {
	s.grantSeq++
	l := &leaseState{id: protos.NewUniqueID(), worker: w, demand: lr.demand, owner: lr.conn, dedicated: lr.dedicated, running: lr.running, detached: lr.detached,
		seq: s.grantSeq, retriable: lr.retriable}
	if lr.dedicated {
		// The process now belongs to the actor: no other lease gets it,
		// and it is killed when this lease ends. A detached actor's
		// outlives the job's driver.
		w.unreserve()
		w.dedicated = true
		w.detached = lr.detached
	}
	s.leases[l.id] = l
	w.leases[l.id] = l
	w.active++
	s.available.Sub(lr.demand)
	s.r.cfg.Logger.Debug().Str("lease", l.id.Short()).Str("worker", w.id.Short()).Str("function", lr.function).Bool("dedicated", l.dedicated).Bool("detached", l.detached).Str("available", s.available.String()).Int("queued", len(s.queue)).Msg("lease granted")
	_ = lr.conn.Reply(lr.req, &protos.RequestWorkerLeaseReply{
		LeaseId:  l.id.Bytes(),
		Worker:   &protos.Address{WorkerId: w.id.Bytes(), NodeId: s.r.cfg.NodeID.Bytes(), Endpoint: w.endpoint, TcpEndpoint: w.tcpEndpoint, Pid: int32(w.pid)},
		Assigned: lr.demand.Proto(),
	})
}

func (s *state) release(l *leaseState) {
	delete(s.leases, l.id)
	delete(l.worker.leases, l.id)
	s.available.Add(l.held())
	if !l.blocked {
		l.worker.active--
	}
}

// endLease releases a lease given back or abandoned by its owner. An
// actor's process is never reused: ending its dedicated lease kills it.
func (s *state) endLease(l *leaseState, disconnect bool) {
	s.release(l)
	switch {
	case disconnect && !l.dedicated:
		// A task's owner gives a lease back with disconnect when the
		// worker's connection failed: the process is dead or dying of
		// something else, which its death's cause should say.
		l.worker.killGone()
	case disconnect || l.dedicated:
		l.worker.kill()
	}
}

func (s *state) returnLease(id protos.LeaseID, disconnect bool) {
	l, ok := s.leases[id]
	if !ok {
		return
	}
	s.endLease(l, disconnect)
	s.r.cfg.Logger.Debug().Str("lease", id.Short()).Bool("dedicated", l.dedicated).Bool("detached", l.detached).Str("available", s.available.String()).Int("queued", len(s.queue)).Msg("lease returned")
}

// actorStarted switches a dedicated lease from the actor's placement
// resources to its running ones (Ray's actors need a CPU to be placed but
// hold none while they live): available += placement - running.
func (s *state) actorStarted(id protos.LeaseID) error {
	l, ok := s.leases[id]
	if !ok {
		return wire.NewError("unknown_lease", "lease %s is not held on this node (returned, or its worker died)", id.Short())
	}
	if !l.dedicated {
		return wire.NewError("invalid", "lease %s is not a dedicated (actor) lease", id.Short())
	}
	if l.started {
		return nil
	}
	s.available.Add(l.held())
	l.demand = l.running.Clone()
	l.started = true
	s.available.Sub(l.held())
	s.r.cfg.Logger.Debug().Str("lease", id.Short()).Str("running", l.demand.String()).Str("available", s.available.String()).Msg("actor started")
	return nil
}

// setBlocked lends a blocked task's CPU back (Ray does the same so nested
// tasks cannot deadlock a node) and takes it again when the task resumes,
// even if that oversubscribes the node for a while.
func (s *state) setBlocked(id protos.LeaseID, blocked bool) {
	l, ok := s.leases[id]
	if !ok || l.blocked == blocked {
		return
	}
	l.blocked = blocked
	cpu := l.demand.Only(CPU)
	if blocked {
		s.available.Add(cpu)
		l.worker.active--
	} else {
		s.available.Sub(cpu)
		l.worker.active++
	}
	s.r.cfg.Logger.Debug().Str("lease", id.Short()).Bool("blocked", blocked).Str("available", s.available.String()).Msg("lease blocked state")
}

func (s *state) connClosed(c *wire.Conn) {
	// Objects owned by a process that is gone can never be freed by it,
	// and no borrower can reach it any more (they get OwnerDiedError):
	// free them, once any views other processes hold are released.
	switch v := c.Value().(type) {
	case *jobState:
		if v.driver == c {
			s.r.freeOwnedBy(v.driverID)
			s.driverLeft(v)
		}
	case *workerProc:
		s.r.freeOwnedBy(v.id)
		// The worker's process is exiting: take it out of the pool now so
		// no lease is granted on it; workerExited finishes when it is reaped.
		s.retireWorker(v)
	}
	for _, l := range s.leases {
		if l.owner != c {
			continue
		}
		if l.dedicated && l.started {
			// A running actor's lease belongs to the GCS, whose
			// connection closes when the head restarts: the actor lives
			// on, and the next GCS attaches to it again (or returns the
			// lease by its id). Its job's end still stops it
			// (driverLeft).
			l.owner = nil
			continue
		}
		s.endLease(l, false)
	}
	s.dispatch()
}

// driverLeft ends a job whose driver disconnected: its task workers and
// non-detached actors' workers are killed, its detached actors live on,
// and the job stays known for them (see jobState.driverGone).
func (s *state) driverLeft(j *jobState) {
	j.driver, j.driverGone = nil, true
	detached := 0
	for _, w := range j.workers {
		if w.detached {
			detached++
		}
	}
	s.r.cfg.Logger.Debug().Str("job", j.id.Short()).Int("detached_actors", detached).Msg("driver disconnected; stopping its workers but detached actors'")
	// dispatch (after connClosed) answers the job's queued requests that
	// are no longer served, then trims what they leave behind; the
	// detached ones keep the workers starting for them.
	s.trimFinishedJob(j, s.waitingJobs()[j.id].detached)
}

// retireWorker removes a worker from the pool and frees its leases.
func (s *state) retireWorker(w *workerProc) {
	if w.dead {
		return
	}
	w.dead = true
	w.unreserve()
	if s.dying == nil {
		s.dying = map[protos.WorkerID]*workerProc{}
	}
	s.dying[w.id] = w
	delete(s.workers, w.id)
	delete(w.job.workers, w.id)
	for _, l := range w.leases {
		s.release(l)
	}
}

func (s *state) workerExited(w *workerProc, err error, kernelOOM bool) {
	wasDead := w.dead
	s.retireWorker(w)
	s.exitCause(w, err, kernelOOM)
	j := w.job
	if wasDead {
		s.dispatch()
		return
	}
	if !w.registered {
		j.starting--
		if _, live := s.jobs[j.id]; live && !s.stopping && !w.killed {
			j.failures++
			s.r.cfg.Logger.Warn().Err(err).Str("job", j.id.Short()).Int("pid", w.pid).Msgf("worker exited before registering (%d in a row); log: %s", j.failures, w.logs.errPath)
			if j.failures >= 3 {
				s.failJob(j, "worker_start_failed", fmt.Errorf("worker processes for %s exit before registering (last: %v); see %s", j.executable, err, w.logs.errPath))
			}
		}
	} else if !w.killed && !s.stopping {
		s.r.cfg.Logger.Warn().Err(err).Int("pid", w.pid).Str("worker", w.id.Short()).Msg("worker died")
	}
	s.dispatch()
}

func (s *state) failJob(j *jobState, code string, err error) {
	if j.fatal == nil {
		j.fatal, j.fatalCode = err, code
		s.r.cfg.Logger.Error().Err(err).Str("job", j.id.Short()).Msg("job cannot run tasks")
	}
}

func (s *state) nodeInfo() *protos.NodeInfo {
	st := s.r.store.Stats()
	hostname, _ := os.Hostname()
	info := &protos.NodeInfo{
		NodeId:            s.r.cfg.NodeID.Bytes(),
		Hostname:          hostname,
		RayletEndpoint:    s.r.endpoint,
		RayletTcpEndpoint: s.r.tcpEndpoint,
		TransferAddress:   s.r.transferAddr(),
		StorePath:         s.r.seg.Path(),
		StoreCapacity:     s.r.seg.Capacity(),
		Total:             s.total.Proto(),
		Available:         s.available.Free().Proto(),
		SessionDir:        s.r.cfg.SessionDir,
		IsHead:            s.r.cfg.IsHead,
		StartTimeUnixMs:   s.startTime.UnixMilli(),
		State:             protos.NodeInfo_ALIVE,
		NumWorkers:        int32(len(s.workers)),
		StoreUsed:         st.Used,
		StoreObjects:      uint32(st.NumObjects),
		Labels:            s.r.cfg.Labels,
		StoreStats:        storeStatsProto(st, s.r.store.SpillDir()),
		CpuBusy:           s.r.cpu.busyFraction(time.Now()),
	}
	if u, err := s.r.readMemory(s.r.mem); err == nil {
		info.MemoryUsed, info.MemoryTotal = u.Used, u.Total
	}
	if t := s.r.transfer; t != nil {
		info.TransferBytesReceived, info.TransferBytesSent = t.puller.Stats().Bytes, t.server.Stats().Bytes
	}
	pending, infeasible := map[string]*protos.ResourceDemand{}, map[string]*protos.ResourceDemand{}
	for _, lr := range s.queue {
		m := pending
		if lr.infeasible {
			m = infeasible
		}
		labels := lr.strategy.GetLabels()
		k := lr.demand.Key() + labelsKey(labels)
		d, ok := m[k]
		if !ok {
			d = &protos.ResourceDemand{Shape: lr.demand.Proto(), Labels: labels}
			m[k] = d
		}
		d.Count++
	}
	info.Pending = sortedDemands(pending)
	info.Infeasible = sortedDemands(infeasible)
	return info
}

// labelsKey tells demands with different label selectors apart.
func labelsKey(ls map[string]*protos.LabelValues) string {
	if len(ls) == 0 {
		return ""
	}
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "|%s=%s", k, strings.Join(ls[k].GetValues(), ","))
	}
	return b.String()
}

func sortedDemands(m map[string]*protos.ResourceDemand) []*protos.ResourceDemand {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*protos.ResourceDemand, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// eagerReportGap is the least time between two reports sent out of turn.
const eagerReportGap = 50 * time.Millisecond

// reportSoon reports now, out of turn, unless it did so within the last
// eagerReportGap (a burst of changes is then in the next periodic report).
func (s *state) reportSoon() {
	if now := s.now(); now.Sub(s.lastEager) >= eagerReportGap {
		s.lastEager = now
		s.report()
	}
}

func (s *state) report() {
	if s.r.cfg.Report != nil {
		s.r.cfg.Report(s.nodeInfo())
	}
}

func (s *state) shutdown() {
	s.stopping = true
	for _, lr := range s.queue {
		_ = lr.conn.ReplyError(lr.req, wire.NewError("shutting_down", "raylet is shutting down"))
	}
	s.queue = nil
	for _, waits := range s.jobWaits {
		for _, lr := range waits {
			_ = lr.conn.ReplyError(lr.req, wire.NewError("shutting_down", "raylet is shutting down"))
		}
	}
	s.jobWaits = nil
	for _, w := range s.workers {
		w.kill()
	}
	for _, w := range s.workers {
		w.waitExit(5 * time.Second)
	}
}

func isClosed(c *wire.Conn) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

func (s *state) clients() []*wire.Conn {
	var out []*wire.Conn
	for _, j := range s.jobs {
		if j.driver != nil {
			out = append(out, j.driver)
		}
	}
	for _, w := range s.workers {
		if w.conn != nil && !w.dead {
			out = append(out, w.conn)
		}
	}
	return out
}
