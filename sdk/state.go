package sdk

import (
	"context"
	"fmt"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/internal/stateapi"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/state"
)

// The state API (Ray's ray.util.state): the cluster's nodes, jobs, actors
// and placement groups, from any driver, task or actor, as goray's own
// types (package state), which `goray list` and `goray get` print.
//
//	alive, err := sdk.ListActors(ctx, sdk.StateFilter("state=ALIVE"), sdk.StateLimit(50))

// ListOption narrows a List call.
type ListOption func(*listOptions) error

type listOptions struct {
	filters []state.Filter
	limit   int
}

// StateFilter keeps the rows whose field (a JSON field name of the state
// type) equals ("field=value") or differs from ("field!=value") a value.
func StateFilter(expr string) ListOption {
	return func(o *listOptions) error {
		f, err := state.ParseFilter(expr)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrArgument, err)
		}
		o.filters = append(o.filters, f)
		return nil
	}
}

// StateLimit keeps at most n rows (default: all).
func StateLimit(n int) ListOption {
	return func(o *listOptions) error {
		if n < 0 {
			return fmt.Errorf("%w: StateLimit %d", ErrArgument, n)
		}
		o.limit = n
		return nil
	}
}

// ListNodes lists the cluster's nodes, alive and dead.
func ListNodes(ctx context.Context, opts ...ListOption) ([]state.Node, error) {
	return list(ctx, stateapi.Nodes, opts)
}

// ListJobs lists the cluster's jobs, oldest first.
func ListJobs(ctx context.Context, opts ...ListOption) ([]state.Job, error) {
	return list(ctx, stateapi.Jobs, opts)
}

// ListActors lists every job's actors, alive and dead.
func ListActors(ctx context.Context, opts ...ListOption) ([]state.Actor, error) {
	return list(ctx, stateapi.Actors, opts)
}

// ListPlacementGroups lists the live placement groups.
func ListPlacementGroups(ctx context.Context, opts ...ListOption) ([]state.PlacementGroup, error) {
	return list(ctx, stateapi.PlacementGroups, opts)
}

// ListWorkers lists the worker processes of every alive node.
func ListWorkers(ctx context.Context, opts ...ListOption) ([]state.Worker, error) {
	return list(ctx, stateapi.Workers, opts)
}

func applyList(opts []ListOption) (listOptions, error) {
	var o listOptions
	for _, f := range opts {
		if err := f(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

func list[T any](ctx context.Context, fetch func(context.Context, stateapi.Source) ([]T, error), opts []ListOption) ([]T, error) {
	o, err := applyList(opts)
	if err != nil {
		return nil, err
	}
	src, err := core.StateSource()
	if err != nil {
		return nil, err
	}
	rows, err := fetch(ctx, src)
	if err != nil {
		return nil, err
	}
	rows, err = state.Select(rows, o.filters, o.limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrArgument, err)
	}
	return rows, nil
}

// ListTasks lists task and actor call attempts, newest first, as their
// owners and executors reported them (task events). The filters may name
// task_id, job_id, state, name, function, type, actor_id, parent_task_id,
// node_id, worker_id and error_type; ids match by prefix.
func ListTasks(ctx context.Context, opts ...ListOption) ([]state.Task, error) {
	o, err := applyList(opts)
	if err != nil {
		return nil, err
	}
	src, err := core.StateSource()
	if err != nil {
		return nil, err
	}
	ts, err := stateapi.Tasks(ctx, src, o.filters, o.limit)
	if err != nil {
		return nil, err
	}
	return ts.Tasks, nil
}

// SummarizeTasks counts every job's task attempts by function and state.
func SummarizeTasks(ctx context.Context) ([]state.TaskSummary, error) {
	src, err := core.StateSource()
	if err != nil {
		return nil, err
	}
	sums, _, err := stateapi.TaskSummaries(ctx, src, protos.JobID{})
	return sums, err
}

// ListObjects lists the cluster's objects, as `goray memory` shows them:
// owner, size, copies, pins and why each is alive.
func ListObjects(ctx context.Context, opts ...ListOption) ([]state.ObjectMemory, error) {
	return list(ctx, stateapi.Objects, opts)
}
