package stateapi

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

// Tasks lists task attempts from the GCS's task manager, which filters
// them (on the fields taskevents.FilterFields names): the newest limit of
// them (0: all it holds).
func Tasks(ctx context.Context, src Source, filters []state.Filter, limit int) (state.Tasks, error) {
	req := &protos.ListTasksRequest{Limit: uint32(max(limit, 0))}
	for _, f := range filters {
		req.Filters = append(req.Filters, &protos.TaskFilter{Field: f.Field, Value: f.Value, Not: f.Not})
		// A whole job id reads that job's stream only.
		if f.Field == "job_id" && !f.Not && len(f.Value) == 2*protos.UniqueIDSize {
			if b, err := hex.DecodeString(f.Value); err == nil {
				req.JobId = b
			}
		}
	}
	var out state.Tasks
	// A reply holds what fits NATS's max payload: page until the limit
	// (or everything) is read.
	for {
		rep, err := src.GCS.ListTasks(ctx, req)
		if err != nil {
			return state.Tasks{}, err
		}
		out.Total, out.DroppedEvents, out.EvictedTasks = int(rep.GetTotal()), rep.GetDroppedEvents(), rep.GetEvictedTasks()
		for _, t := range rep.GetTasks() {
			out.Tasks = append(out.Tasks, task(t))
		}
		want := out.Total
		if limit > 0 {
			want = min(want, limit)
		}
		if len(rep.GetTasks()) == 0 || len(out.Tasks) >= want {
			return out, nil
		}
		req.Offset = uint32(len(out.Tasks))
		if limit > 0 {
			req.Limit = uint32(limit - len(out.Tasks))
		}
	}
}

// TaskSummaries counts task attempts by function and state (job zero:
// every job's).
func TaskSummaries(ctx context.Context, src Source, job protos.JobID) ([]state.TaskSummary, state.Tasks, error) {
	rep, err := src.GCS.SummarizeTasks(ctx, job)
	if err != nil {
		return nil, state.Tasks{}, err
	}
	var out []state.TaskSummary
	for _, s := range rep.GetSummaries() {
		ts := state.TaskSummary{Function: s.GetFunction(), Type: s.GetType().String(), States: map[string]int{}}
		for k, n := range s.GetStates() {
			ts.States[k] = int(n)
			ts.Total += int(n)
		}
		out = append(out, ts)
	}
	return out, state.Tasks{Total: int(rep.GetTotal()), DroppedEvents: rep.GetDroppedEvents(), EvictedTasks: rep.GetEvictedTasks()}, nil
}

func nanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func task(t *protos.TaskInfo) state.Task {
	return state.Task{
		TaskID: hexID(t.GetTaskId()), Attempt: int(t.GetAttempt()), Name: t.GetName(), State: t.GetState().String(),
		JobID: hexID(t.GetJobId()), Type: t.GetType().String(), Function: t.GetFunction(), ActorID: hexID(t.GetActorId()),
		ParentTaskID: hexID(t.GetParentTaskId()), NodeID: hexID(t.GetNodeId()), WorkerID: hexID(t.GetWorkerId()), WorkerPID: int(t.GetWorkerPid()),
		ErrorType: t.GetErrorType(), ErrorMessage: t.GetErrorMessage(),
		CreationTime: nanos(t.GetCreationTimeUnixNanos()), StartTime: nanos(t.GetStartTimeUnixNanos()), EndTime: nanos(t.GetEndTimeUnixNanos()),
	}
}

// JobByPrefix finds the job whose id starts with prefix.
func JobByPrefix(ctx context.Context, src Source, prefix string) (state.Job, error) {
	jobs, err := Jobs(ctx, src)
	if err != nil {
		return state.Job{}, err
	}
	return ByIDPrefix(jobs, prefix, func(j state.Job) string { return j.JobID })
}
