package sdk

import (
	"context"
	"reflect"
)

// Remote functions are registered at package init and called through the
// typed handle Register returns:
//
//	var Add = sdk.Register2("example.Add", func(ctx context.Context, a, b int) (int, error) {
//		return a + b, nil
//	})
//
//	sum := Add.Remote(ctx, 1, 2)           // sdk.Ref[int], at once
//	v, err := sum.Get(ctx)                  // 3
//	next := Add.RemoteArgs(ctx, sum, sdk.Val(10)) // a ref argument is resolved first
//
// The name must be stable across builds of the binary: workers find the
// function by it.

// Arg is a task argument: a value (Val) or a Ref whose value the task
// receives once it is ready.
type Arg[T any] interface {
	taskArg() argSource
}

type argSource struct {
	value any
	ref   ObjectRef
	isRef bool
}

type valArg[T any] struct{ v T }

func (a valArg[T]) taskArg() argSource { return argSource{value: a.v} }

// Val wraps a plain value as an Arg.
func Val[T any](v T) Arg[T] { return valArg[T]{v} }

func (r Ref[T]) taskArg() argSource { return argSource{ref: r.ObjectRef, isRef: true} }

// funcBase holds what every arity shares.
type funcBase struct {
	name string
	opts callOptions
}

// Name returns the registered name.
func (f funcBase) Name() string { return f.name }

func submitTyped[R any](ctx context.Context, f funcBase, args ...argSource) Ref[R] {
	cw := current()
	if cw == nil {
		return failedRef[R](ErrNotInitialized)
	}
	ref, err := cw.submitTask(ctx, f.name, args, f.opts)
	if err != nil {
		return failedRef[R](err)
	}
	return Ref[R]{ref}
}

func result[R any](r R, err error) (any, error) { return r, err }

// Func0 is a remote function with no arguments.
type Func0[R any] struct{ funcBase }

// Register0 registers fn under name.
func Register0[R any](name string, fn func(context.Context) (R, error)) *Func0[R] {
	register(name, fn, func(ctx context.Context, _ []reflect.Value) (any, error) { return result(fn(ctx)) })
	return &Func0[R]{funcBase{name: name, opts: defaultCallOptions()}}
}

// Remote submits a call and returns a ref to its result at once.
func (f *Func0[R]) Remote(ctx context.Context) Ref[R] { return submitTyped[R](ctx, f.funcBase) }

// Options returns a copy of f whose calls use opts.
func (f *Func0[R]) Options(opts ...CallOption) *Func0[R] {
	return &Func0[R]{f.withOptions(opts)}
}

// Func1 is a remote function of one argument.
type Func1[A, R any] struct{ funcBase }

// Register1 registers fn under name.
func Register1[A, R any](name string, fn func(context.Context, A) (R, error)) *Func1[A, R] {
	register(name, fn, func(ctx context.Context, a []reflect.Value) (any, error) {
		return result(fn(ctx, arg[A](a[0])))
	})
	return &Func1[A, R]{funcBase{name: name, opts: defaultCallOptions()}}
}

// Remote submits a call and returns a ref to its result at once.
func (f *Func1[A, R]) Remote(ctx context.Context, a A) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, argSource{value: a})
}

// RemoteArgs is Remote with arguments that may be refs.
func (f *Func1[A, R]) RemoteArgs(ctx context.Context, a Arg[A]) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, a.taskArg())
}

// Options returns a copy of f whose calls use opts.
func (f *Func1[A, R]) Options(opts ...CallOption) *Func1[A, R] {
	return &Func1[A, R]{f.withOptions(opts)}
}

// Func2 is a remote function of two arguments.
type Func2[A, B, R any] struct{ funcBase }

// Register2 registers fn under name.
func Register2[A, B, R any](name string, fn func(context.Context, A, B) (R, error)) *Func2[A, B, R] {
	register(name, fn, func(ctx context.Context, a []reflect.Value) (any, error) {
		return result(fn(ctx, arg[A](a[0]), arg[B](a[1])))
	})
	return &Func2[A, B, R]{funcBase{name: name, opts: defaultCallOptions()}}
}

// Remote submits a call and returns a ref to its result at once.
func (f *Func2[A, B, R]) Remote(ctx context.Context, a A, b B) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, argSource{value: a}, argSource{value: b})
}

// RemoteArgs is Remote with arguments that may be refs.
func (f *Func2[A, B, R]) RemoteArgs(ctx context.Context, a Arg[A], b Arg[B]) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, a.taskArg(), b.taskArg())
}

// Options returns a copy of f whose calls use opts.
func (f *Func2[A, B, R]) Options(opts ...CallOption) *Func2[A, B, R] {
	return &Func2[A, B, R]{f.withOptions(opts)}
}

// Func3 is a remote function of three arguments.
type Func3[A, B, C, R any] struct{ funcBase }

// Register3 registers fn under name.
func Register3[A, B, C, R any](name string, fn func(context.Context, A, B, C) (R, error)) *Func3[A, B, C, R] {
	register(name, fn, func(ctx context.Context, a []reflect.Value) (any, error) {
		return result(fn(ctx, arg[A](a[0]), arg[B](a[1]), arg[C](a[2])))
	})
	return &Func3[A, B, C, R]{funcBase{name: name, opts: defaultCallOptions()}}
}

// Remote submits a call and returns a ref to its result at once.
func (f *Func3[A, B, C, R]) Remote(ctx context.Context, a A, b B, c C) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, argSource{value: a}, argSource{value: b}, argSource{value: c})
}

// RemoteArgs is Remote with arguments that may be refs.
func (f *Func3[A, B, C, R]) RemoteArgs(ctx context.Context, a Arg[A], b Arg[B], c Arg[C]) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, a.taskArg(), b.taskArg(), c.taskArg())
}

// Options returns a copy of f whose calls use opts.
func (f *Func3[A, B, C, R]) Options(opts ...CallOption) *Func3[A, B, C, R] {
	return &Func3[A, B, C, R]{f.withOptions(opts)}
}

// Func4 is a remote function of four arguments.
type Func4[A, B, C, D, R any] struct{ funcBase }

// Register4 registers fn under name.
func Register4[A, B, C, D, R any](name string, fn func(context.Context, A, B, C, D) (R, error)) *Func4[A, B, C, D, R] {
	register(name, fn, func(ctx context.Context, a []reflect.Value) (any, error) {
		return result(fn(ctx, arg[A](a[0]), arg[B](a[1]), arg[C](a[2]), arg[D](a[3])))
	})
	return &Func4[A, B, C, D, R]{funcBase{name: name, opts: defaultCallOptions()}}
}

// Remote submits a call and returns a ref to its result at once.
func (f *Func4[A, B, C, D, R]) Remote(ctx context.Context, a A, b B, c C, d D) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, argSource{value: a}, argSource{value: b}, argSource{value: c}, argSource{value: d})
}

// RemoteArgs is Remote with arguments that may be refs.
func (f *Func4[A, B, C, D, R]) RemoteArgs(ctx context.Context, a Arg[A], b Arg[B], c Arg[C], d Arg[D]) Ref[R] {
	return submitTyped[R](ctx, f.funcBase, a.taskArg(), b.taskArg(), c.taskArg(), d.taskArg())
}

// Options returns a copy of f whose calls use opts.
func (f *Func4[A, B, C, D, R]) Options(opts ...CallOption) *Func4[A, B, C, D, R] {
	return &Func4[A, B, C, D, R]{f.withOptions(opts)}
}

func (f funcBase) withOptions(opts []CallOption) funcBase {
	n := funcBase{name: f.name, opts: f.opts.clone()}
	for _, o := range opts {
		o(&n.opts)
	}
	return n
}

// arg converts a decoded reflect.Value to T; interface-typed parameters
// may arrive as invalid values when the argument was nil.
func arg[T any](v reflect.Value) T {
	if !v.IsValid() {
		var zero T
		return zero
	}
	t, _ := v.Interface().(T)
	return t
}

// Call submits the function registered under name with untyped arguments
// (values, or ObjectRefs to resolve first). It is for tools and dynamic
// dispatch; typed handles from Register* catch mistakes at compile time
// instead. The result decodes with Get(ctx, AsRef[R](ref)).
func Call(ctx context.Context, name string, args []any, opts ...CallOption) ObjectRef {
	f := funcBase{name: name, opts: defaultCallOptions()}.withOptions(opts)
	srcs := make([]argSource, len(args))
	for i, a := range args {
		if r, ok := a.(ObjectRef); ok {
			srcs[i] = argSource{ref: r, isRef: true}
		} else {
			srcs[i] = argSource{value: a}
		}
	}
	return submitTyped[any](ctx, f, srcs...).ObjectRef
}
