package gcs

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/protos"
)

// Facts one manager owns and others act on: the node manager decides that
// a node is dead (the placement group manager then places its bundles
// again), the job manager that a job finished (the actor manager kills its
// actors, the placement group manager removes its groups). They travel as
// actor messages through the supervisor, the one actor that knows every
// manager's PID, and never through NATS: the goray.events.* subjects are
// for the rest of the cluster, and were the GCS to read them back, anyone
// able to publish there could make it reschedule bundles of a live node or
// kill a running job's actors.

type (
	// nodeDied: the node manager has recorded the node DEAD.
	nodeDied struct{ node protos.NodeID }
	// jobChanged: the job manager has recorded the job registered (again)
	// or finished.
	jobChanged struct {
		job      protos.JobID
		finished bool
	}
)

// peers is how a manager tells the other managers a fact: through its
// parent, the supervisor (route).
type peers struct {
	root   *actor.RootContext
	parent *actor.PID
}

// started records where to send; a manager calls it on Started, which
// also runs after a restart.
func (p *peers) started(ctx actor.Context) {
	p.root, p.parent = ctx.ActorSystem().Root, ctx.Parent()
}

func (p *peers) tell(msg any) {
	if p.parent != nil {
		p.root.Send(p.parent, msg)
	}
}

// route delivers a fact to the managers that act on it. It runs in the
// supervisor's mailbox, after its Started has spawned every manager, and
// keeps the order in which one manager told its facts.
func (s *supervisor) route(ctx actor.Context, msg any) {
	switch msg := msg.(type) {
	case nodeDied:
		ctx.Send(s.children.pgs, pgNodeDead{node: msg.node})
	case jobChanged:
		ctx.Send(s.children.actors, jobEvent{job: msg.job, finished: msg.finished})
		ctx.Send(s.children.tasks, taskJob{job: msg.job, finished: msg.finished})
		if msg.finished {
			ctx.Send(s.children.pgs, pgJobFinished{job: msg.job})
		}
	}
}
