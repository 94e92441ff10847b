package main

import (
	"context"
	"fmt"
	"os"

	"github.com/goray/goray/sdk"
)

// Remote functions of the benchmark, registered at package init so the
// driver and the workers (which re-run this binary) build the same table.
var (
	// noop is Ray's small_value: a task that does nothing and returns a
	// tiny value.
	noop = sdk.Register0("bench.Noop", func(ctx context.Context) (int, error) { return 0, nil })

	// clientBatch is Ray's Client.small_value_batch for
	// multi_client_tasks_async: from inside a task, submit n no-op tasks
	// (nested submission, this worker owns them) and get them all.
	clientBatch = sdk.Register1("bench.ClientBatch", func(ctx context.Context, n int) (int, error) {
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = noop.Remote(ctx)
		}
		vals, err := sdk.GetAll(ctx, refs)
		if err != nil {
			return 0, err
		}
		if len(vals) != n {
			return 0, fmt.Errorf("got %d values for %d tasks", len(vals), n)
		}
		return n, nil
	})
)

// benchActor is ray_perf's Actor: methods that do nothing and return a tiny
// value (Ray returns b"ok"; here int 0, as the no-op task).
type benchActor struct{}

func (a *benchActor) SmallValue(ctx context.Context) (int, error) { return 0, nil }

func (a *benchActor) SmallValueArg(ctx context.Context, x int) (int, error) { return 0, nil }

// Pid confirms the actor is alive and tells which process to watch for
// after it is killed.
func (a *benchActor) Pid(ctx context.Context) (int, error) { return os.Getpid(), nil }

var (
	benchActorClass = sdk.RegisterActor0("bench.Actor", func(ctx context.Context) (*benchActor, error) {
		return &benchActor{}, nil
	})
	actorSmallValue    = sdk.NewMethod0(benchActorClass, "SmallValue", (*benchActor).SmallValue)
	actorSmallValueArg = sdk.NewMethod1(benchActorClass, "SmallValueArg", (*benchActor).SmallValueArg)
	actorPid           = sdk.NewMethod0(benchActorClass, "Pid", (*benchActor).Pid)

	// actorClient is ray_perf's work(actors) of n:n actor calls async:
	// from inside a task, n calls spread round-robin over the actors, then
	// a get of them all. It returns the number of calls.
	actorClient = sdk.Register2("bench.ActorClient", func(ctx context.Context, actors []sdk.Actor[benchActor], n int) (int, error) {
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = actorSmallValue.Remote(ctx, actors[i%len(actors)])
		}
		return checkAll(ctx, refs)
	})

	// actorClientArg is ray_perf's Client.small_value_batch_arg: put a
	// tiny value once, then n calls each passing its ref, spread
	// round-robin over the actors, then a get of them all.
	actorClientArg = sdk.Register2("bench.ActorClientArg", func(ctx context.Context, actors []sdk.Actor[benchActor], n int) (int, error) {
		x, err := sdk.Put(ctx, 0)
		if err != nil {
			return 0, err
		}
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = actorSmallValueArg.RemoteArgs(ctx, actors[i%len(actors)], x)
		}
		return checkAll(ctx, refs)
	})
)

// checkAll gets every ref and returns how many there were.
func checkAll(ctx context.Context, refs []sdk.Ref[int]) (int, error) {
	vals, err := sdk.GetAll(ctx, refs)
	if err != nil {
		return 0, err
	}
	if len(vals) != len(refs) {
		return 0, fmt.Errorf("got %d values for %d calls", len(vals), len(refs))
	}
	return len(vals), nil
}
