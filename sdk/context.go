package sdk

import (
	"context"

	"github.com/goray/goray/internal/core"
)

// RuntimeContext describes where the calling code runs.
type RuntimeContext struct {
	JobID    JobID
	NodeID   NodeID
	WorkerID WorkerID
	// TaskID is zero in the driver.
	TaskID   TaskID
	Function string
	// Attempt is 0 on the first run of a task, then 1, 2... on retries.
	Attempt int
	// Resources are those assigned to the running task.
	Resources map[string]float64
	IsWorker  bool
	// ActorID is set inside an actor's constructor and methods.
	ActorID ActorID
	// WasRestarted reports, inside an actor, that this instance was
	// re-created after its process died (or it was killed with restart).
	WasRestarted bool
}

// GetRuntimeContext returns the job, node, worker and task of the caller;
// inside a task pass the task's context.
func GetRuntimeContext(ctx context.Context) RuntimeContext {
	rc := core.GetRuntimeContext(ctx)
	return RuntimeContext{
		JobID: JobID(rc.JobID), NodeID: NodeID(rc.NodeID), WorkerID: WorkerID(rc.WorkerID),
		TaskID: TaskID(rc.TaskID), Function: rc.Function, Attempt: rc.Attempt, Resources: rc.Resources,
		IsWorker: rc.IsWorker, ActorID: ActorID(rc.ActorID), WasRestarted: rc.WasRestarted,
	}
}
