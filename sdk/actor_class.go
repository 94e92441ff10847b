package sdk

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/goray/goray/protos"
)

// Actors are ordinary Go structs. Register the constructor at package init
// and each remote method with its method expression:
//
//	type Counter struct{ n int }
//	func (c *Counter) Inc(ctx context.Context, by int) (int, error) { c.n += by; return c.n, nil }
//
//	var CounterActor = sdk.RegisterActor1("example.Counter", func(ctx context.Context, start int) (*Counter, error) {
//		return &Counter{n: start}, nil
//	})
//	var CounterInc = sdk.Method1(CounterActor, "Inc", (*Counter).Inc)
//
//	c, err := CounterActor.Remote(ctx, 10)     // sdk.Actor[Counter]
//	n, err := CounterInc.Remote(ctx, c, 1).Get(ctx) // 11
//
// The actor runs on a worker process of its own (as Ray's), its methods one
// at a time in the order each caller submitted them.

// actorClassInfo is what a worker needs to construct and call an actor.
type actorClassInfo struct {
	name    string
	typ     reflect.Type
	params  []reflect.Type
	ctor    func(ctx context.Context, args []reflect.Value) (any, error)
	methods map[string]*registeredFunc
}

var actorRegistry = struct {
	sync.RWMutex
	classes map[string]*actorClassInfo
	byType  map[reflect.Type]*actorClassInfo
}{classes: map[string]*actorClassInfo{}, byType: map[reflect.Type]*actorClassInfo{}}

func registerActorClass(name string, typ reflect.Type, ctorFn any, ctor func(ctx context.Context, args []reflect.Value) (any, error)) *actorClassInfo {
	if name == "" {
		panic("goray: RegisterActor: empty class name")
	}
	t := reflect.TypeOf(ctorFn)
	info := &actorClassInfo{name: name, typ: typ, ctor: ctor, methods: map[string]*registeredFunc{}}
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

func lookupActorClass(name string) (*actorClassInfo, bool) {
	actorRegistry.RLock()
	defer actorRegistry.RUnlock()
	c, ok := actorRegistry.classes[name]
	return c, ok
}

func registerMethod(class *actorClassInfo, name string, fn any, invoke func(ctx context.Context, self any, args []reflect.Value) (any, error)) *registeredFunc {
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

// ActorClass is the part of every registered actor class that names it.
type ActorClass[T any] struct {
	info *actorClassInfo
	opts actorOptions
}

// Name returns the registered class name.
func (c *ActorClass[T]) Name() string { return c.info.name }

func (c *ActorClass[T]) class() *ActorClass[T] { return c }

type actorClassOf[T any] interface{ class() *ActorClass[T] }

func (c *ActorClass[T]) withOptions(opts []ActorOption) ActorClass[T] {
	n := ActorClass[T]{info: c.info, opts: c.opts.clone()}
	for _, o := range opts {
		o(&n.opts)
	}
	return n
}

// ActorClass0 is an actor class whose constructor takes no arguments.
type ActorClass0[T any] struct{ ActorClass[T] }

// RegisterActor0 registers an actor class under name.
func RegisterActor0[T any](name string, ctor func(context.Context) (*T, error)) *ActorClass0[T] {
	info := registerActorClass(name, reflect.TypeOf((*T)(nil)).Elem(), ctor, func(ctx context.Context, _ []reflect.Value) (any, error) {
		return ctor(ctx)
	})
	return &ActorClass0[T]{ActorClass[T]{info: info, opts: defaultActorOptions()}}
}

// Remote creates an actor and returns its handle once the GCS has
// registered it; the constructor runs on a worker afterwards.
func (c *ActorClass0[T]) Remote(ctx context.Context) (Actor[T], error) {
	return createActor[T](ctx, &c.ActorClass)
}

// Options returns a copy of c whose actors use opts.
func (c *ActorClass0[T]) Options(opts ...ActorOption) *ActorClass0[T] {
	return &ActorClass0[T]{c.withOptions(opts)}
}

// ActorClass1 is an actor class whose constructor takes one argument.
type ActorClass1[T, A any] struct{ ActorClass[T] }

// RegisterActor1 registers an actor class under name.
func RegisterActor1[T, A any](name string, ctor func(context.Context, A) (*T, error)) *ActorClass1[T, A] {
	info := registerActorClass(name, reflect.TypeOf((*T)(nil)).Elem(), ctor, func(ctx context.Context, a []reflect.Value) (any, error) {
		return ctor(ctx, arg[A](a[0]))
	})
	return &ActorClass1[T, A]{ActorClass[T]{info: info, opts: defaultActorOptions()}}
}

// Remote creates an actor (see ActorClass0.Remote).
func (c *ActorClass1[T, A]) Remote(ctx context.Context, a A) (Actor[T], error) {
	return createActor[T](ctx, &c.ActorClass, argSource{value: a})
}

// Options returns a copy of c whose actors use opts.
func (c *ActorClass1[T, A]) Options(opts ...ActorOption) *ActorClass1[T, A] {
	return &ActorClass1[T, A]{c.withOptions(opts)}
}

// ActorClass2 is an actor class whose constructor takes two arguments.
type ActorClass2[T, A, B any] struct{ ActorClass[T] }

// RegisterActor2 registers an actor class under name.
func RegisterActor2[T, A, B any](name string, ctor func(context.Context, A, B) (*T, error)) *ActorClass2[T, A, B] {
	info := registerActorClass(name, reflect.TypeOf((*T)(nil)).Elem(), ctor, func(ctx context.Context, a []reflect.Value) (any, error) {
		return ctor(ctx, arg[A](a[0]), arg[B](a[1]))
	})
	return &ActorClass2[T, A, B]{ActorClass[T]{info: info, opts: defaultActorOptions()}}
}

// Remote creates an actor (see ActorClass0.Remote).
func (c *ActorClass2[T, A, B]) Remote(ctx context.Context, a A, b B) (Actor[T], error) {
	return createActor[T](ctx, &c.ActorClass, argSource{value: a}, argSource{value: b})
}

// Options returns a copy of c whose actors use opts.
func (c *ActorClass2[T, A, B]) Options(opts ...ActorOption) *ActorClass2[T, A, B] {
	return &ActorClass2[T, A, B]{c.withOptions(opts)}
}

// methodBase holds what every method arity shares.
type methodBase struct {
	class  string
	name   string
	stream bool
}

// Method0 is a remote method with no arguments.
type Method0[T, R any] struct{ methodBase }

// NewMethod0 registers fn (a method expression such as (*Counter).Get) as
// method name of class c.
func NewMethod0[T, R any](c actorClassOf[T], name string, fn func(*T, context.Context) (R, error)) *Method0[T, R] {
	info := c.class().info
	registerMethod(info, name, fn, func(ctx context.Context, self any, _ []reflect.Value) (any, error) {
		return result(fn(self.(*T), ctx))
	})
	return &Method0[T, R]{methodBase{class: info.name, name: name}}
}

// Remote calls the method on actor a and returns a ref to its result.
func (m *Method0[T, R]) Remote(ctx context.Context, a Actor[T]) Ref[R] {
	return callTyped[R](ctx, a.h, m.methodBase)
}

// Method1 is a remote method of one argument.
type Method1[T, A, R any] struct{ methodBase }

// NewMethod1 registers fn (a method expression such as (*Counter).Inc) as
// method name of class c.
func NewMethod1[T, A, R any](c actorClassOf[T], name string, fn func(*T, context.Context, A) (R, error)) *Method1[T, A, R] {
	info := c.class().info
	registerMethod(info, name, fn, func(ctx context.Context, self any, a []reflect.Value) (any, error) {
		return result(fn(self.(*T), ctx, arg[A](a[0])))
	})
	return &Method1[T, A, R]{methodBase{class: info.name, name: name}}
}

// Remote calls the method on actor a and returns a ref to its result.
func (m *Method1[T, A, R]) Remote(ctx context.Context, a Actor[T], x A) Ref[R] {
	return callTyped[R](ctx, a.h, m.methodBase, argSource{value: x})
}

// RemoteArgs is Remote with an argument that may be a ref.
func (m *Method1[T, A, R]) RemoteArgs(ctx context.Context, a Actor[T], x Arg[A]) Ref[R] {
	return callTyped[R](ctx, a.h, m.methodBase, x.taskArg())
}

// Method2 is a remote method of two arguments.
type Method2[T, A, B, R any] struct{ methodBase }

// NewMethod2 registers fn as method name of class c.
func NewMethod2[T, A, B, R any](c actorClassOf[T], name string, fn func(*T, context.Context, A, B) (R, error)) *Method2[T, A, B, R] {
	info := c.class().info
	registerMethod(info, name, fn, func(ctx context.Context, self any, a []reflect.Value) (any, error) {
		return result(fn(self.(*T), ctx, arg[A](a[0]), arg[B](a[1])))
	})
	return &Method2[T, A, B, R]{methodBase{class: info.name, name: name}}
}

// Remote calls the method on actor a and returns a ref to its result.
func (m *Method2[T, A, B, R]) Remote(ctx context.Context, a Actor[T], x A, y B) Ref[R] {
	return callTyped[R](ctx, a.h, m.methodBase, argSource{value: x}, argSource{value: y})
}

// RemoteArgs is Remote with arguments that may be refs.
func (m *Method2[T, A, B, R]) RemoteArgs(ctx context.Context, a Actor[T], x Arg[A], y Arg[B]) Ref[R] {
	return callTyped[R](ctx, a.h, m.methodBase, x.taskArg(), y.taskArg())
}

// StreamMethod1 is an actor method of one argument that yields a stream.
type StreamMethod1[T, A, R any] struct{ methodBase }

// NewStreamMethod1 registers fn, a generator method such as
// (*Reader).Lines with signature func(*T, ctx, A, yield func(R) error) error,
// as method name of class c.
func NewStreamMethod1[T, A, R any](c actorClassOf[T], name string, fn func(*T, context.Context, A, func(R) error) error) *StreamMethod1[T, A, R] {
	info := c.class().info
	rf := registerMethod(info, name, fn, nil)
	rf.params = rf.params[:1]
	rf.invokeStreamMethod = func(ctx context.Context, self any, a []reflect.Value, yield func(any) error) error {
		return fn(self.(*T), ctx, arg[A](a[0]), func(v R) error { return yield(v) })
	}
	return &StreamMethod1[T, A, R]{methodBase{class: info.name, name: name}}
}

// Remote starts the generator method on actor a and returns its stream.
func (m *StreamMethod1[T, A, R]) Remote(ctx context.Context, a Actor[T], x A) *Stream[R] {
	cw := current()
	if cw == nil {
		return failedStream[R](ErrNotInitialized)
	}
	if a.h == nil {
		return failedStream[R](fmt.Errorf("%w: call of %s.%s on a nil actor handle", ErrArgument, m.class, m.name))
	}
	mb := m.methodBase
	mb.stream = true
	ref, err := cw.callActor(ctx, a.h, mb, []argSource{{value: x}})
	if err != nil {
		return failedStream[R](err)
	}
	taskID := ref.h.id.TaskID()
	return newStream[R](cw, taskID, cw.streams.get(taskID), ref)
}

func callTyped[R any](ctx context.Context, h *actorHandle, m methodBase, args ...argSource) Ref[R] {
	cw := current()
	if cw == nil {
		return failedRef[R](ErrNotInitialized)
	}
	if h == nil {
		return failedRef[R](fmt.Errorf("%w: call of %s.%s on a nil actor handle", ErrArgument, m.class, m.name))
	}
	ref, err := cw.callActor(ctx, h, m, args)
	if err != nil {
		return failedRef[R](err)
	}
	return Ref[R]{ref}
}

// ActorOption sets an option of actor creation.
type ActorOption func(*actorOptions)

type actorOptions struct {
	p *protos.ActorOptions
}

func defaultActorOptions() actorOptions {
	return actorOptions{p: &protos.ActorOptions{
		PlacementResources: &protos.Resources{Amounts: map[string]float64{"CPU": 1}},
		RunningResources:   &protos.Resources{Amounts: map[string]float64{}},
	}}
}

func (o actorOptions) clone() actorOptions {
	return actorOptions{p: cloneProto(o.p)}
}

// setActorResource sets what the actor holds both to be placed and while
// it runs (cloned options may carry nil maps).
func (o *actorOptions) setResource(name string, v float64) {
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
func ActorCPUs(n float64) ActorOption { return func(o *actorOptions) { o.setResource("CPU", n) } }

// ActorGPUs sets the GPUs the actor holds.
func ActorGPUs(n float64) ActorOption { return func(o *actorOptions) { o.setResource("GPU", n) } }

// ActorResources sets custom resources the actor holds.
func ActorResources(r map[string]float64) ActorOption {
	return func(o *actorOptions) {
		for k, v := range r {
			o.setResource(k, v)
		}
	}
}

// ActorName names the actor so sdk.GetActor finds it; names are unique
// per namespace among live actors.
func ActorName(name string) ActorOption { return func(o *actorOptions) { o.p.Name = name } }

// ActorNamespace sets the namespace of a named actor (default: the job's).
func ActorNamespace(ns string) ActorOption { return func(o *actorOptions) { o.p.Namespace = ns } }

// Detached lets the actor outlive its driver.
func Detached() ActorOption { return func(o *actorOptions) { o.p.Detached = true } }

// GetIfExists returns the live actor of the same name instead of failing.
func GetIfExists() ActorOption { return func(o *actorOptions) { o.p.GetIfExists = true } }

// MaxRestarts sets how often the actor is re-created after its process
// died (default 0; -1 for no limit).
func MaxRestarts(n int) ActorOption { return func(o *actorOptions) { o.p.MaxRestarts = int32(n) } }

// MaxTaskRetries sets how often a call in flight when the actor died is
// retried on the restarted actor (default 0; -1 for no limit).
func MaxTaskRetries(n int) ActorOption {
	return func(o *actorOptions) { o.p.MaxTaskRetries = int32(n) }
}

// MaxConcurrency lets up to n calls run at once, on goroutines.
func MaxConcurrency(n int) ActorOption {
	return func(o *actorOptions) { o.p.MaxConcurrency = int32(n) }
}

// ConcurrencyGroup runs the named methods in a group of their own, with up
// to max of them at once, beside the actor's other calls.
func ConcurrencyGroup(name string, max int, methods ...string) ActorOption {
	return func(o *actorOptions) {
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
	return func(o *actorOptions) {
		o.p.Packed = true
		o.p.PlacementResources = &protos.Resources{Amounts: map[string]float64{}}
		o.p.RunningResources = &protos.Resources{Amounts: map[string]float64{}}
	}
}

// MaxPendingCalls makes a call fail at once (ErrPendingCallsExceeded) when
// this caller already has n calls queued or running on the actor.
func MaxPendingCalls(n int) ActorOption {
	return func(o *actorOptions) { o.p.MaxPendingCalls = int32(n) }
}
