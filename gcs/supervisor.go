package gcs

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// managers are the PIDs of the GCS's manager actors.
type managers struct {
	nodes, jobs, functions, kv, actors, pgs, tasks *actor.PID
}

func (m managers) all() []*actor.PID {
	return []*actor.PID{m.nodes, m.jobs, m.functions, m.kv, m.actors, m.pgs, m.tasks}
}

// getManagers asks the supervisor for its children's PIDs.
type getManagers struct{}

// supervisor is the parent of the managers. A manager that panics on a
// message is restarted (reloading its state from its bucket) instead of
// taking the GCS down; one that keeps failing is stopped, and its requests
// then time out as ErrUnavailable.
type supervisor struct {
	env         *managerEnv
	nodeTimeout time.Duration
	placer      placer // nil: the wire transport
	children    managers
}

func supervisorProps(env *managerEnv, nodeTimeout time.Duration, p placer) *actor.Props {
	strategy := actor.NewOneForOneStrategy(10, 10*time.Second, actor.DefaultDecider)
	return actor.PropsFromProducer(func() actor.Actor {
		return &supervisor{env: env, nodeTimeout: nodeTimeout, placer: p}
	}, actor.WithSupervisor(strategy))
}

func (s *supervisor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		// Each child opens and loads its own bucket in its own Started,
		// so the loads run concurrently.
		s.children = managers{
			nodes:     s.spawn(ctx, "nodes", newNodeManager(s.env.with("nodes"), s.nodeTimeout)),
			jobs:      s.spawn(ctx, "jobs", newJobManager(s.env.with("jobs"))),
			functions: s.spawn(ctx, "functions", newFunctionManager(s.env.with("functions"))),
			kv:        s.spawn(ctx, "kv", newKVManager(s.env.with("kv"))),
			tasks:     s.spawn(ctx, "tasks", newTaskManager(s.env.with("tasks"), s.env.taskOpts)),
		}
		// The actor manager asks the node manager where to place actors
		// and the job manager which jobs finished.
		actorsEnv := s.env.with("actors")
		p := s.placer
		if p == nil {
			p = newWirePlacer(actorsEnv.log, actorsEnv.wireAuth)
		}
		shared := &actorShared{placer: p, nodes: s.children.nodes, jobs: s.children.jobs, stopped: make(chan struct{})}
		s.children.actors = s.spawn(ctx, "actors", newActorManager(actorsEnv, shared))
		// The placement group manager reserves bundles through the same
		// raylet connections.
		reserver, _ := p.(bundleReserver)
		s.children.pgs = s.spawn(ctx, "placement_groups", newPGManager(s.env.with("placement_groups"),
			&pgShared{nodes: s.children.nodes, actors: s.children.actors, reserver: reserver}))
	case getManagers:
		ctx.Respond(s.children)
	case nodeDied, jobChanged:
		s.route(ctx, ctx.Message())
	}
}

func (s *supervisor) spawn(ctx actor.Context, name string, p actor.Producer) *actor.PID {
	pid, err := ctx.SpawnNamed(actor.PropsFromProducer(p), name)
	if err != nil {
		// Names are unique under this parent and the system is new, so
		// this only happens on a programming error; the PID is still
		// usable (SpawnNamed returns the existing one).
		s.env.log.Error().Err(err).Str("actor", name).Msg("spawn manager")
	}
	return pid
}

func (env *managerEnv) with(manager string) *managerEnv {
	e := *env
	e.log = env.log.With().Str("manager", manager).Logger()
	return &e
}
