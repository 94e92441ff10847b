package sdk

import (
	"time"

	"github.com/goray/goray/internal/core"
)

// Options say how a task or an actor runs. One vocabulary serves both
// where the meaning is the same: NumCPUs, NumGPUs, Memory, Resources,
// Scheduling, InPlacementGroup and Name are Options, accepted by a
// function's Options and an actor class's Options alike. Options that
// mean something for one kind only are a TaskOption (MaxRetries,
// RetryExceptions, RetryIf) or an ActorOption (Namespace, Detached,
// MaxRestarts, ...), and the compiler refuses them on the other.
//
//	f.Options(sdk.NumCPUs(2), sdk.MaxRetries(5)).Remote(ctx, x)
//	cls.Options(sdk.NumCPUs(1), sdk.Name("counter"), sdk.Detached()).Remote(ctx)

// TaskOption sets an option of a task call (see Func1.Options).
type TaskOption interface{ taskOption() core.CallOption }

// ActorOption sets an option of actor creation (see ActorClass1.Options).
type ActorOption interface{ actorOption() core.ActorOption }

// Option sets an option of tasks and actors alike.
type Option interface {
	TaskOption
	ActorOption
}

type taskOpt core.CallOption

func (o taskOpt) taskOption() core.CallOption { return core.CallOption(o) }

type actorOpt core.ActorOption

func (o actorOpt) actorOption() core.ActorOption { return core.ActorOption(o) }

type bothOpt struct {
	task  core.CallOption
	actor core.ActorOption
}

func (o bothOpt) taskOption() core.CallOption   { return o.task }
func (o bothOpt) actorOption() core.ActorOption { return o.actor }

func taskOptions(base core.CallOptions, opts []TaskOption) core.CallOptions {
	co := make([]core.CallOption, len(opts))
	for i, o := range opts {
		co[i] = o.taskOption()
	}
	return base.With(co...)
}

func actorOptions(base core.ActorOptions, opts []ActorOption) core.ActorOptions {
	co := make([]core.ActorOption, len(opts))
	for i, o := range opts {
		co[i] = o.actorOption()
	}
	return base.With(co...)
}

// NumCPUs sets the CPUs a task needs (default 1; fractions allowed; 0
// runs it without holding a CPU), or that an actor holds while it runs and
// needs to be placed (by default, as Ray, an actor needs 1 CPU to be
// placed and holds none while it runs).
func NumCPUs(n float64) Option { return bothOpt{core.NumCPUs(n), core.ActorCPUs(n)} }

// NumGPUs sets the GPUs a task needs or an actor holds.
func NumGPUs(n float64) Option { return bothOpt{core.NumGPUs(n), core.ActorGPUs(n)} }

// Memory sets the bytes of memory a task or actor reserves for scheduling.
func Memory(bytes float64) Option { return bothOpt{core.Memory(bytes), core.ActorMemory(bytes)} }

// Resources adds custom resource demands, e.g. {"TPU": 1}.
func Resources(r map[string]float64) Option {
	return bothOpt{core.Resources(r), core.ActorResources(r)}
}

// Scheduling sets where a task or actor may run (see Strategy).
func Scheduling(s Strategy) Option {
	return bothOpt{core.Scheduling(s.s), core.ActorScheduling(s.s)}
}

// InPlacementGroup runs a task or places an actor in bundle bundle of pg
// (-1: any bundle of it). Its resources come out of the bundle's
// reservation; an actor dies when the group is removed.
func InPlacementGroup(pg PlacementGroup, bundle int) Option {
	return bothOpt{core.InPlacementGroup(pg.pg, bundle), core.ActorInPlacementGroup(pg.pg, bundle)}
}

// Name names a task (its display name in logs and the state API) or an
// actor (GetActor finds it by name; names are unique per namespace among
// live actors). An empty actor name is an error.
func Name(name string) Option { return bothOpt{core.Name(name), core.ActorName(name)} }

// MaxRetries sets how often a task is re-run after its worker died (and,
// with RetryExceptions, after it failed): default 3, -1 for no limit.
func MaxRetries(n int) TaskOption { return taskOpt(core.MaxRetries(n)) }

// RetryExceptions retries tasks that return an error. With no errors given
// every error is retried; otherwise only errors matching one of them by
// errors.Is.
func RetryExceptions(errs ...error) TaskOption { return taskOpt(core.RetryExceptions(errs...)) }

// RetryIf retries tasks whose error satisfies pred (use errors.As in it to
// retry chosen error types).
func RetryIf(pred func(error) bool) TaskOption { return taskOpt(core.RetryIf(pred)) }

// NamespaceOption sets a namespace: the job's, given to Init (default
// "default"), or a named actor's, given to an actor class's Options
// (default: the job's).
type NamespaceOption interface {
	InitOption
	ActorOption
}

type namespaceOpt string

func (ns namespaceOpt) initOption() core.InitOption   { return core.Namespace(string(ns)) }
func (ns namespaceOpt) actorOption() core.ActorOption { return core.ActorNamespace(string(ns)) }

// Namespace sets the job's namespace (at Init), where its named actors
// live unless they name another (as an actor option).
func Namespace(ns string) NamespaceOption { return namespaceOpt(ns) }

// Detached lets the actor outlive its driver. A detached actor must have
// a Name.
func Detached() ActorOption { return actorOpt(core.Detached()) }

// GetIfExists returns the live actor of the same name instead of failing.
func GetIfExists() ActorOption { return actorOpt(core.GetIfExists()) }

// MaxRestarts sets how often the actor is re-created after its process
// died (default 0; -1 for no limit).
func MaxRestarts(n int) ActorOption { return actorOpt(core.MaxRestarts(n)) }

// MaxTaskRetries sets how often a call in flight when the actor died is
// retried on the restarted actor (default 0; -1 for no limit). With 0 a
// call never waits for a restart either: one made while the actor
// restarts fails at once with ErrActorUnavailable, as in Ray.
func MaxTaskRetries(n int) ActorOption { return actorOpt(core.MaxTaskRetries(n)) }

// MaxConcurrency lets up to n calls run at once, on goroutines.
func MaxConcurrency(n int) ActorOption { return actorOpt(core.MaxConcurrency(n)) }

// ConcurrencyGroup runs the named methods in a group of their own, with up
// to max of them at once, beside the actor's other calls.
func ConcurrencyGroup(name string, max int, methods ...string) ActorOption {
	return actorOpt(core.ConcurrencyGroup(name, max, methods...))
}

// Packed places the actor in a worker process shared with other packed
// actors of its job on the node, each its own Proto.Actor actor, instead
// of a process of its own: one node can then host tens of thousands of
// actors. The trade-off is isolation: a crash (os.Exit, a fatal runtime
// error, SIGKILL) of the shared process takes every actor in it down, each
// then restarting by its own MaxRestarts, and the actors share the
// process's memory and CPU. A packed actor holds no resources. Panics in
// methods are still contained to their call.
func Packed() ActorOption { return actorOpt(core.Packed()) }

// MaxPendingCalls makes a call fail at once (ErrPendingCallsExceeded) when
// this caller already has n calls queued or running on the actor.
func MaxPendingCalls(n int) ActorOption { return actorOpt(core.MaxPendingCalls(n)) }

// GetOption sets an option of Get, GetAll, Wait and GetView.
type GetOption func(*getOptions)

type getOptions struct {
	timeout time.Duration
	noFetch bool
}

func getOpts(opts []GetOption) getOptions {
	var o getOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Timeout bounds how long Get waits; past it Get returns ErrGetTimeout
// (and Wait returns what is ready by then).
func Timeout(d time.Duration) GetOption { return func(o *getOptions) { o.timeout = d } }

// FetchLocal(false) makes Wait count an object ready as soon as it exists
// anywhere in the cluster (Ray's fetch_local=False). By default Wait counts
// it once it is also in this node's store, pulling it from the node that
// holds it, so that the Get that follows does not wait for the transfer.
func FetchLocal(fetch bool) GetOption { return func(o *getOptions) { o.noFetch = !fetch } }

// CancelOption sets an option of Cancel.
type CancelOption func(*cancelOptions)

type cancelOptions struct{ force, noRecursive bool }

// Force kills the worker running the task instead of interrupting it.
func Force() CancelOption { return func(o *cancelOptions) { o.force = true } }

// NoRecursive leaves the tasks the cancelled task submitted running.
func NoRecursive() CancelOption { return func(o *cancelOptions) { o.noRecursive = true } }
