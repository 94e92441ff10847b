// Package sdk is goray's public API: Ray's programming model for Go.
//
// # The model
//
// A goray program is a driver. It registers ordinary Go functions and
// structs at package init, calls sdk.Init, and then calls them remotely:
// each call becomes a task (or an actor method call) that runs in a worker
// process somewhere in the cluster, and returns at once with a Ref, a
// future for the result. Workers re-run the same binary, so every
// registered function exists in them by the same name.
//
//	var Square = sdk.Register1("example.Square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	func main() {
//		ctx := context.Background()
//		if err := sdk.Init(ctx); err != nil { // embedded single-node cluster
//			log.Fatal(err)
//		}
//		defer sdk.Shutdown()
//		ref := Square.Remote(ctx, 7)  // sdk.Ref[int], at once
//		v, err := ref.Get(ctx)        // 49
//		...
//	}
//
// The pieces:
//
//   - Functions: Register0..Register6 give typed handles (Func1 ...);
//     Remote submits a call, RemoteArgs takes refs as arguments (resolved
//     before the call runs), Options sets TaskOptions. RegisterStream0..2
//     register generators whose items stream back (Stream).
//   - Objects: Put stores a value and returns a Ref; Get, GetAll and Wait
//     read and wait for refs; Cancel cancels the task behind a ref; GetView
//     reads a large object zero-copy from the node's shared memory. Refs
//     may be passed to tasks and stored inside other values; an object
//     lives while any ref to it is reachable anywhere in the cluster.
//   - Actors: RegisterActor0..3 register a struct's constructor and
//     NewMethod0..3 its methods; ActorClassN.Remote creates an actor (a
//     worker process of its own, or Packed into a shared one), Actor[T] is
//     its handle, and method calls run one at a time in submission order
//     unless MaxConcurrency says otherwise. Named and detached actors are
//     found again with GetActor.
//   - Options: NumCPUs, NumGPUs, Memory, Resources, Scheduling,
//     InPlacementGroup and Name apply to tasks and actors alike; the rest
//     apply to one kind only, which the compiler checks.
//   - Placement groups: CreatePlacementGroup reserves bundles of resources
//     across nodes, all or none.
//   - Failures: a failed task gives a *TaskError from Get, matching the
//     sentinel of its kind with errors.Is (ErrWorkerCrashed, ErrActorDied,
//     ...); errors a task returns come back as themselves where registered
//     (RegisterError, RegisterErrorType).
//   - The cluster: Init with no Address starts an embedded cluster inside
//     the process (no daemon); Address("auto") or GORAY_ADDRESS joins one
//     that `goray start` runs. ClusterStatus, MemorySummary and
//     GetRuntimeContext say what runs where.
//
// Call Init (or WorkerMain) first thing in main: in a worker process it
// runs the worker and never returns. Tests use package goraytest, whose
// Main does this for a test binary.
package sdk
