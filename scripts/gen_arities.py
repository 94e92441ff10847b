L = "ABCDEF"
P = "abcdef"
def tparams(n): return [L[i] for i in range(n)]
def funcs(maxn=6):
    out = []
    for n in range(maxn+1):
        tp = tparams(n)
        gen = ", ".join(tp + ["R"]) + " any"
        targs = ", ".join(tp + ["R"])
        params = ", ".join(f"{P[i]} {L[i]}" for i in range(n))
        argparams = ", ".join(f"{P[i]} Arg[{L[i]}]" for i in range(n))
        ctxparams = ", ".join(["context.Context"] + tp)
        calls = ", ".join(["ctx"] + [f"arg[{L[i]}](a[{i}])" for i in range(n)])
        vals = ", ".join(f"core.Arg{{Value: {P[i]}}}" for i in range(n))
        argv = ", ".join(f"{P[i]}.taskArg()" for i in range(n))
        word = ["no arguments","one argument","two arguments","three arguments","four arguments","five arguments","six arguments"][n]
        out.append(f'''// Func{n} is a remote function of {word}.
type Func{n}[{gen}] struct{{ funcBase }}

// Register{n} registers fn under name.
func Register{n}[{gen}](name string, fn func({ctxparams}) (R, error)) *Func{n}[{targs}] {{
	core.RegisterFunction(name, fn, func(ctx context.Context, a []reflect.Value) (any, error) {{
		return result(fn({calls}))
	}})
	return &Func{n}[{targs}]{{newFuncBase(name)}}
}}

// Remote submits a call and returns a ref to its result at once.
func (fn *Func{n}[{targs}]) Remote({", ".join(["ctx context.Context"] + ([params] if n else []))}) Ref[R] {{
	return submit[R](ctx, fn.funcBase{", " + vals if n else ""})
}}
''')
        if n:
            out.append(f'''
// RemoteArgs is Remote with arguments that may be refs (see Arg).
func (fn *Func{n}[{targs}]) RemoteArgs(ctx context.Context, {argparams}) Ref[R] {{
	return submit[R](ctx, fn.funcBase, {argv})
}}
''')
        out.append(f'''
// Options returns a copy of fn whose calls use opts.
func (fn *Func{n}[{targs}]) Options(opts ...TaskOption) *Func{n}[{targs}] {{
	return &Func{n}[{targs}]{{fn.withOptions(opts)}}
}}

''')
    return "".join(out)

def streams(maxn=2):
    out=[]
    for n in range(maxn+1):
        tp = tparams(n)
        gen = ", ".join(tp + ["T"]) + " any"
        targs = ", ".join(tp + ["T"])
        params = ", ".join(f"{P[i]} {L[i]}" for i in range(n))
        argparams = ", ".join(f"{P[i]} Arg[{L[i]}]" for i in range(n))
        ctxparams = ", ".join(["context.Context"] + tp + ["func(T) error"])
        calls = ", ".join(["ctx"] + [f"arg[{L[i]}](a[{i}])" for i in range(n)] + ["func(v T) error { return yield(v) }"])
        vals = ", ".join(f"core.Arg{{Value: {P[i]}}}" for i in range(n))
        argv = ", ".join(f"{P[i]}.taskArg()" for i in range(n))
        word = ["no arguments","one argument","two arguments"][n]
        out.append(f'''// StreamFunc{n} is a streaming remote function of {word}.
type StreamFunc{n}[{gen}] struct{{ funcBase }}

// RegisterStream{n} registers a generator under name.
func RegisterStream{n}[{gen}](name string, fn func({ctxparams}) error) *StreamFunc{n}[{targs}] {{
	core.RegisterStreamFunction(name, fn, {n}, func(ctx context.Context, a []reflect.Value, yield func(any) error) error {{
		return runtimeError(fn({calls}))
	}})
	return &StreamFunc{n}[{targs}]{{funcBase{{name: name, opts: core.StreamCallOptions()}}}}
}}

// Remote starts the generator and returns its stream at once.
func (fn *StreamFunc{n}[{targs}]) Remote({", ".join(["ctx context.Context"] + ([params] if n else []))}) *Stream[T] {{
	return submitStream[T](ctx, fn.funcBase{", " + vals if n else ""})
}}
''')
        if n:
            out.append(f'''
// RemoteArgs is Remote with arguments that may be refs (see Arg).
func (fn *StreamFunc{n}[{targs}]) RemoteArgs(ctx context.Context, {argparams}) *Stream[T] {{
	return submitStream[T](ctx, fn.funcBase, {argv})
}}
''')
        out.append(f'''
// Options returns a copy of fn whose calls use opts (streaming calls are
// never retried).
func (fn *StreamFunc{n}[{targs}]) Options(opts ...TaskOption) *StreamFunc{n}[{targs}] {{
	return &StreamFunc{n}[{targs}]{{fn.withOptions(opts)}}
}}

''')
    return "".join(out)

def actors(maxn=3):
    out=[]
    for n in range(maxn+1):
        tp = tparams(n)
        gen = ", ".join(["T"] + tp) + " any"
        targs = ", ".join(["T"] + tp)
        params = ", ".join(f"{P[i]} {L[i]}" for i in range(n))
        argparams = ", ".join(f"{P[i]} Arg[{L[i]}]" for i in range(n))
        ctxparams = ", ".join(["context.Context"] + tp)
        calls = ", ".join(["ctx"] + [f"arg[{L[i]}](a[{i}])" for i in range(n)])
        vals = ", ".join(f"core.Arg{{Value: {P[i]}}}" for i in range(n))
        argv = ", ".join(f"{P[i]}.taskArg()" for i in range(n))
        word = ["takes no arguments","takes one argument","takes two arguments","takes three arguments"][n]
        first = "Remote creates an actor and returns its handle; the constructor runs\n// on a worker afterwards. A named actor is registered with the GCS before\n// Remote returns (so a taken name fails it); an unnamed one, as in Ray,\n// in the background: calls queue until the actor is alive, and handing the\n// handle to another process or Kill waits for the registration. If that\n// fails, calls fail with ErrActorDied and the reason." if n==0 else "Remote creates an actor (see ActorClass0.Remote)."
        out.append(f'''// ActorClass{n} is an actor class whose constructor {word}.
type ActorClass{n}[{gen}] struct{{ ActorClass[T] }}

// RegisterActor{n} registers an actor class under name.
func RegisterActor{n}[{gen}](name string, ctor func({ctxparams}) (*T, error)) *ActorClass{n}[{targs}] {{
	info := core.RegisterActorClass(name, reflect.TypeFor[T](), ctor, func(ctx context.Context, a []reflect.Value) (any, error) {{
		v, err := ctor({calls})
		return v, runtimeError(err)
	}})
	return &ActorClass{n}[{targs}]{{newActorClass[T](info)}}
}}

// {first}
func (cls *ActorClass{n}[{targs}]) Remote({", ".join(["ctx context.Context"] + ([params] if n else []))}) (Actor[T], error) {{
	return createActor(ctx, &cls.ActorClass{", " + vals if n else ""})
}}
''')
        if n:
            out.append(f'''
// RemoteArgs is Remote with arguments that may be refs (see Arg): the
// actor is created once they are ready.
func (cls *ActorClass{n}[{targs}]) RemoteArgs(ctx context.Context, {argparams}) (Actor[T], error) {{
	return createActor(ctx, &cls.ActorClass, {argv})
}}
''')
        out.append(f'''
// Options returns a copy of cls whose actors use opts.
func (cls *ActorClass{n}[{targs}]) Options(opts ...ActorOption) *ActorClass{n}[{targs}] {{
	return &ActorClass{n}[{targs}]{{cls.withOptions(opts)}}
}}

''')
    return "".join(out)

Q = "xyz"
def methods(maxn=3):
    out=[]
    for n in range(maxn+1):
        tp = tparams(n)
        gen = ", ".join(["T"] + tp + ["R"]) + " any"
        targs = ", ".join(["T"] + tp + ["R"])
        params = ", ".join(f"{Q[i]} {L[i]}" for i in range(n))
        argparams = ", ".join(f"{Q[i]} Arg[{L[i]}]" for i in range(n))
        fnparams = ", ".join(["*T", "context.Context"] + tp)
        calls = ", ".join(["self.(*T)", "ctx"] + [f"arg[{L[i]}](a[{i}])" for i in range(n)])
        vals = ", ".join(f"core.Arg{{Value: {Q[i]}}}" for i in range(n))
        argv = ", ".join(f"{Q[i]}.taskArg()" for i in range(n))
        word = ["no arguments","one argument","two arguments","three arguments"][n]
        out.append(f'''// Method{n} is a remote method of {word}.
type Method{n}[{gen}] struct{{ method }}

// NewMethod{n} registers fn (a method expression such as (*Counter).Inc)
// as method name of class c.
func NewMethod{n}[{gen}](c actorClassOf[T], name string, fn func({fnparams}) (R, error)) *Method{n}[{targs}] {{
	info := c.class().info
	core.RegisterMethod(info, name, fn, func(ctx context.Context, self any, a []reflect.Value) (any, error) {{
		return result(fn({calls}))
	}})
	return &Method{n}[{targs}]{{method{{class: info.Name(), name: name}}}}
}}

// Remote calls the method on actor a and returns a ref to its result.
func (m *Method{n}[{targs}]) Remote({", ".join(["ctx context.Context", "a Actor[T]"] + ([params] if n else []))}) Ref[R] {{
	return callMethod[R](ctx, a.h, m.method{", " + vals if n else ""})
}}
''')
        if n:
            out.append(f'''
// RemoteArgs is Remote with arguments that may be refs (see Arg).
func (m *Method{n}[{targs}]) RemoteArgs(ctx context.Context, a Actor[T], {argparams}) Ref[R] {{
	return callMethod[R](ctx, a.h, m.method, {argv})
}}
''')
        out.append("\n")
    return "".join(out)

def smethods(maxn=2):
    out=[]
    for n in range(maxn+1):
        tp = tparams(n)
        gen = ", ".join(["T"] + tp + ["R"]) + " any"
        targs = ", ".join(["T"] + tp + ["R"])
        params = ", ".join(f"{Q[i]} {L[i]}" for i in range(n))
        argparams = ", ".join(f"{Q[i]} Arg[{L[i]}]" for i in range(n))
        fnparams = ", ".join(["*T", "context.Context"] + tp + ["func(R) error"])
        calls = ", ".join(["self.(*T)", "ctx"] + [f"arg[{L[i]}](a[{i}])" for i in range(n)] + ["func(v R) error { return yield(v) }"])
        vals = ", ".join(f"core.Arg{{Value: {Q[i]}}}" for i in range(n))
        argv = ", ".join(f"{Q[i]}.taskArg()" for i in range(n))
        word = ["no arguments","one argument","two arguments"][n]
        out.append(f'''// StreamMethod{n} is an actor method of {word} that yields a stream.
type StreamMethod{n}[{gen}] struct{{ method }}

// NewStreamMethod{n} registers fn, a generator method whose last
// parameter is a yield function (func(R) error), as method name of class c.
func NewStreamMethod{n}[{gen}](c actorClassOf[T], name string, fn func({fnparams}) error) *StreamMethod{n}[{targs}] {{
	info := c.class().info
	core.RegisterStreamMethod(info, name, fn, {n}, func(ctx context.Context, self any, a []reflect.Value, yield func(any) error) error {{
		return runtimeError(fn({calls}))
	}})
	return &StreamMethod{n}[{targs}]{{method{{class: info.Name(), name: name}}}}
}}

// Remote starts the generator method on actor a and returns its stream.
func (m *StreamMethod{n}[{targs}]) Remote({", ".join(["ctx context.Context", "a Actor[T]"] + ([params] if n else []))}) *Stream[R] {{
	return callStream[R](ctx, a.h, m.method{", " + vals if n else ""})
}}
''')
        if n:
            out.append(f'''
// RemoteArgs is Remote with arguments that may be refs (see Arg).
func (m *StreamMethod{n}[{targs}]) RemoteArgs(ctx context.Context, a Actor[T], {argparams}) *Stream[R] {{
	return callStream[R](ctx, a.h, m.method, {argv})
}}
''')
        out.append("\n")
    return "".join(out)

hdr = '''// Code generated by scripts/gen_arities.py; DO NOT EDIT.

package sdk

import (
	"context"
	"reflect"

	"github.com/goray/goray/internal/core"
)

'''
import sys
root = sys.argv[1]
open(root+"/sdk/func_arities.go","w").write(hdr+funcs()+streams())
open(root+"/sdk/actor_arities.go","w").write(hdr+actors()+methods()+smethods())
import subprocess
subprocess.run(["gofmt", "-w", root+"/sdk/func_arities.go", root+"/sdk/actor_arities.go"], check=True)
