package core

import (
	"context"
	"maps"
	"sync/atomic"

	"github.com/goray/goray/protos"
)

// taskInfo rides in the context of a running task.
type taskInfo struct {
	taskID    protos.TaskID
	leaseID   protos.LeaseID
	function  string
	attempt   int
	resources map[string]float64
	// blocked counts goroutines of this task waiting in Get, so the CPU is
	// lent back once and taken back once.
	blocked atomic.Int32
}

type taskInfoKey struct{}

func withTaskInfo(ctx context.Context, ti *taskInfo) context.Context {
	return context.WithValue(ctx, taskInfoKey{}, ti)
}

func taskInfoFrom(ctx context.Context) *taskInfo {
	if ctx == nil {
		return nil
	}
	ti, _ := ctx.Value(taskInfoKey{}).(*taskInfo)
	return ti
}

// RuntimeContext describes where the calling code runs.
type RuntimeContext struct {
	JobID    protos.JobID
	NodeID   protos.NodeID
	WorkerID protos.WorkerID
	// TaskID is zero in the driver.
	TaskID   protos.TaskID
	Function string
	// Attempt is 0 on the first run of a task, then 1, 2... on retries.
	Attempt int
	// Resources are those assigned to the running task.
	Resources map[string]float64
	IsWorker  bool
	// ActorID is set inside an actor's constructor and methods.
	ActorID protos.UniqueID
	// WasRestarted reports, inside an actor, that this instance was
	// re-created after its process died (or it was killed with restart).
	WasRestarted bool
}

// GetRuntimeContext returns the job, node, worker and task of the caller;
// inside a task pass the task's context.
func GetRuntimeContext(ctx context.Context) RuntimeContext {
	cw := Current()
	if cw == nil {
		return RuntimeContext{}
	}
	rc := RuntimeContext{JobID: cw.jobID, NodeID: cw.node().id, WorkerID: cw.workerID, IsWorker: cw.isWorker}
	if ti := taskInfoFrom(ctx); ti != nil {
		rc.TaskID, rc.Function, rc.Attempt, rc.Resources = ti.taskID, ti.function, ti.attempt, maps.Clone(ti.resources)
	}
	if ai, ok := ctx.Value(actorInfoKey{}).(*actorInfo); ok {
		rc.ActorID, rc.WasRestarted = ai.id, ai.numRestarts > 0
	}
	return rc
}
