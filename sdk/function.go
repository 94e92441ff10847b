package sdk

import (
	"context"
	"reflect"

	"github.com/goray/goray/internal/core"
)

// Remote functions are registered at package init and called through the
// typed handle Register returns:
//
//	var Add = sdk.Register2("example.Add", func(ctx context.Context, a, b int) (int, error) {
//		return a + b, nil
//	})
//
//	sum := Add.Remote(ctx, 1, 2)                   // sdk.Ref[int], at once
//	v, err := sum.Get(ctx)                         // 3
//	next := Add.RemoteArgs(ctx, sum, sdk.Val(10))  // a ref argument is resolved first
//
// The name must be stable across builds of the binary: workers find the
// function by it. Register0 to Register6 take functions of zero to six
// arguments after the context.

// Arg is an argument of RemoteArgs: a value (Val) or a Ref whose value the
// callee receives once it is ready.
type Arg[T any] interface {
	taskArg() core.Arg
}

type valArg[T any] struct{ v T }

func (a valArg[T]) taskArg() core.Arg { return core.Arg{Value: a.v} }

// Val wraps a plain value as an Arg.
func Val[T any](v T) Arg[T] { return valArg[T]{v} }

func (r Ref[T]) taskArg() core.Arg { return core.Arg{Ref: r.r, IsRef: true} }

// funcBase holds what every arity shares.
type funcBase struct {
	name string
	opts core.CallOptions
}

func newFuncBase(name string) funcBase {
	return funcBase{name: name, opts: core.DefaultCallOptions()}
}

// Name returns the registered name.
func (f funcBase) Name() string { return f.name }

func (f funcBase) withOptions(opts []TaskOption) funcBase {
	return funcBase{name: f.name, opts: taskOptions(f.opts, opts)}
}

func submit[R any](ctx context.Context, f funcBase, args ...core.Arg) Ref[R] {
	w := core.Current()
	if w == nil {
		return failedRef[R](ErrNotInitialized)
	}
	ref, err := w.SubmitTask(ctx, f.name, args, f.opts)
	if err != nil {
		return failedRef[R](err)
	}
	return Ref[R]{ObjectRef{ref}}
}

// result hands a function's result to the runtime.
func result[R any](r R, err error) (any, error) { return r, runtimeError(err) }

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
// (values, or refs to resolve first). It is for tools and dynamic
// dispatch; typed handles from Register* catch mistakes at compile time
// instead. The result decodes with Get(ctx, AsRef[R](ref)).
func Call(ctx context.Context, name string, args []any, opts ...TaskOption) ObjectRef {
	f := newFuncBase(name).withOptions(opts)
	srcs := make([]core.Arg, len(args))
	for i, a := range args {
		if r, ok := a.(AnyRef); ok {
			srcs[i] = core.Arg{Ref: r.untyped().r, IsRef: true}
		} else {
			srcs[i] = core.Arg{Value: a}
		}
	}
	return submit[any](ctx, f, srcs...).ObjectRef
}
