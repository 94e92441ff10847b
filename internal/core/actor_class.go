package core

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/goray/goray/protos"
)

// ActorClass is what a worker needs to construct and call an actor.
type ActorClass struct {
	name    string
	typ     reflect.Type
	params  []reflect.Type
	ctor    func(ctx context.Context, args []reflect.Value) (any, error)
	methods map[string]*registeredFunc
}

var actorRegistry = struct {
	sync.RWMutex
	classes map[string]*ActorClass
	byType  map[reflect.Type]*ActorClass
}{classes: map[string]*ActorClass{}, byType: map[reflect.Type]*ActorClass{}}

// RegisterActorClass registers an actor class: its name, Go type and
// constructor (ctorFn, for the function table's signature; ctor, to call it
// with decoded arguments).
func RegisterActorClass(name string, typ reflect.Type, ctorFn any, ctor func(ctx context.Context, args []reflect.Value) (any, error)) *ActorClass {
	if name == "" {
		panic("goray: RegisterActor: empty class name")
	}
	t := reflect.TypeOf(ctorFn)
	info := &ActorClass{name: name, typ: typ, ctor: ctor, methods: map[string]*registeredFunc{}}
	for i := 1; i < t.NumIn(); i++ {
		info.params = append(info.params, t.In(i))
	}
	actorRegistry.Lock()
	defer actorRegistry.Unlock()
	if _, dup := actorRegistry.classes[name]; dup {
		panic(fmt.Sprintf("goray: actor class %q registered twice", name))
	}
	actorRegistry.classes[name] = info
	actorRegistry.byType[typ] = info
	// The constructor joins the function table, so binary mismatches show.
	register("actor:"+name, ctorFn, nil)
	return info
}

func lookupActorClass(name string) (*ActorClass, bool) {
	actorRegistry.RLock()
	defer actorRegistry.RUnlock()
	c, ok := actorRegistry.classes[name]
	return c, ok
}

// Name returns the class's registered name.
func (c *ActorClass) Name() string { return c.name }

// RegisterMethod registers fn, a method expression of the class's type, as
// method name; invoke calls it on an instance with decoded arguments.
func RegisterMethod(class *ActorClass, name string, fn any, invoke func(ctx context.Context, self any, args []reflect.Value) (any, error)) {
	registerMethod(class, name, fn, invoke)
}

// RegisterStreamMethod registers a generator method taking nparams
// arguments (after the context) and a yield function.
func RegisterStreamMethod(class *ActorClass, name string, fn any, nparams int, invoke func(ctx context.Context, self any, args []reflect.Value, yield func(any) error) error) {
	rf := registerMethod(class, name, fn, nil)
	rf.params = rf.params[:nparams]
	rf.invokeStreamMethod = invoke
}

func registerMethod(class *ActorClass, name string, fn any, invoke func(ctx context.Context, self any, args []reflect.Value) (any, error)) *registeredFunc {
	if name == "" {
		panic("goray: Method: empty method name")
	}
	t := reflect.TypeOf(fn)
	rf := &registeredFunc{name: class.name + "." + name, signature: t.String()}
	for i := 2; i < t.NumIn(); i++ {
		rf.params = append(rf.params, t.In(i))
	}
	rf.invokeMethod = invoke
	actorRegistry.Lock()
	if _, dup := class.methods[name]; dup {
		actorRegistry.Unlock()
		panic(fmt.Sprintf("goray: method %s.%s registered twice", class.name, name))
	}
	class.methods[name] = rf
	actorRegistry.Unlock()
	register("method:"+rf.name, fn, nil)
	return rf
}

// ActorOption sets an option of actor creation.
type ActorOption func(*ActorOptions)

type ActorOptions struct {
	p *protos.ActorOptions
	// nameSet tells an empty Name option from none.
	nameSet bool
	// env is the actor's runtime env (ActorRuntimeEnv).
	env []RuntimeEnvPart
}

func DefaultActorOptions() ActorOptions {
	return ActorOptions{p: &protos.ActorOptions{
		PlacementResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}},
		RunningResources:   &protos.Resources{Amounts: map[string]float64{}},
	}}
}

func (o ActorOptions) clone() ActorOptions {
	return ActorOptions{p: cloneProto(o.p), nameSet: o.nameSet, env: slices.Clip(o.env)}
}

// With returns a copy of o with opts applied.
func (o ActorOptions) With(opts ...ActorOption) ActorOptions {
	n := o.clone()
	for _, f := range opts {
		f(&n)
	}
	return n
}

// setActorResource sets what the actor holds both to be placed and while
// it runs (cloned options may carry nil maps).
func (o *ActorOptions) setResource(name string, v float64) {
	for _, r := range []**protos.Resources{&o.p.PlacementResources, &o.p.RunningResources} {
		if *r == nil {
			*r = &protos.Resources{}
		}
		if (*r).Amounts == nil {
			(*r).Amounts = map[string]float64{}
		}
		(*r).Amounts[name] = v
	}
}

// ActorCPUs sets the CPUs the actor holds while it runs (and to be placed).
// By default, as Ray, an actor needs 1 CPU to be placed and holds none
// while it runs.
func ActorCPUs(n float64) ActorOption { return func(o *ActorOptions) { o.setResource("CPU", n) } }

// ActorGPUs sets the GPUs the actor holds.
func ActorGPUs(n float64) ActorOption { return func(o *ActorOptions) { o.setResource("GPU", n) } }

// ActorResources sets custom resources the actor holds.
func ActorResources(r map[string]float64) ActorOption {
	return func(o *ActorOptions) {
		for k, v := range r {
			o.setResource(k, v)
		}
	}
}

// ActorName names the actor so sdk.GetActor finds it; names are unique
// per namespace among live actors.
func ActorName(name string) ActorOption {
	return func(o *ActorOptions) { o.p.Name, o.nameSet = name, true }
}

// ActorNamespace sets the namespace of a named actor (default: the job's).
func ActorNamespace(ns string) ActorOption { return func(o *ActorOptions) { o.p.Namespace = ns } }

// Detached lets the actor outlive its driver.
func Detached() ActorOption { return func(o *ActorOptions) { o.p.Detached = true } }

// GetIfExists returns the live actor of the same name instead of failing.
func GetIfExists() ActorOption { return func(o *ActorOptions) { o.p.GetIfExists = true } }

// MaxRestarts sets how often the actor is re-created after its process
// died (default 0; -1 for no limit).
func MaxRestarts(n int) ActorOption { return func(o *ActorOptions) { o.p.MaxRestarts = int32(n) } }

// MaxTaskRetries sets how often a call in flight when the actor died is
// retried on the restarted actor (default 0; -1 for no limit). With 0 a
// call never waits for a restart either: one made while the actor
// restarts fails at once with ErrActorUnavailable, as in Ray.
func MaxTaskRetries(n int) ActorOption {
	return func(o *ActorOptions) { o.p.MaxTaskRetries = int32(n) }
}

// MaxConcurrency lets up to n calls run at once, on goroutines.
func MaxConcurrency(n int) ActorOption {
	return func(o *ActorOptions) { o.p.MaxConcurrency = int32(n) }
}

// ConcurrencyGroup runs the named methods in a group of their own, with up
// to max of them at once, beside the actor's other calls.
func ConcurrencyGroup(name string, max int, methods ...string) ActorOption {
	return func(o *ActorOptions) {
		o.p.ConcurrencyGroups = append(o.p.ConcurrencyGroups, &protos.ConcurrencyGroup{Name: name, MaxConcurrency: int32(max), Methods: methods})
	}
}

// Packed places the actor in a worker process shared with other packed
// actors of its job on the node, each its own Proto.Actor actor, instead
// of a process of its own: one node can then host tens of thousands of
// actors. The trade-off is isolation: a crash (os.Exit, a fatal runtime
// error, SIGKILL) of the shared process takes every actor in it down, each
// then restarting by its own MaxRestarts, and the actors share the
// process's memory and CPU. A packed actor holds no resources. Panics in
// methods are still contained to their call.
func Packed() ActorOption {
	return func(o *ActorOptions) {
		o.p.Packed = true
		o.p.PlacementResources = &protos.Resources{Amounts: map[string]float64{}}
		o.p.RunningResources = &protos.Resources{Amounts: map[string]float64{}}
	}
}

// MaxPendingCalls makes a call fail at once (ErrPendingCallsExceeded) when
// this caller already has n calls queued or running on the actor.
func MaxPendingCalls(n int) ActorOption {
	return func(o *ActorOptions) { o.p.MaxPendingCalls = int32(n) }
}

// ActorMemory sets the bytes of memory the actor reserves for scheduling.
func ActorMemory(bytes float64) ActorOption {
	return func(o *ActorOptions) { o.setResource("memory", bytes) }
}
