package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/goray/goray/protos"
)

// The function registry maps stable names to Go functions. Driver and
// workers run the same binary, so both build the same registry at package
// init; a digest of it catches a worker started from a different binary.

type registeredFunc struct {
	name      string
	signature string
	params    []reflect.Type // after the context
	fn        reflect.Value
	// invoke calls the function with decoded arguments; fast paths avoid
	// reflection for the common arities.
	invoke func(ctx context.Context, args []reflect.Value) (any, error)
	// invokeMethod calls an actor method on its instance.
	invokeMethod func(ctx context.Context, self any, args []reflect.Value) (any, error)
	// invokeStream runs a generator, passing each yielded value to yield.
	invokeStream func(ctx context.Context, args []reflect.Value, yield func(any) error) error
	// invokeStreamMethod runs an actor method that is a generator.
	invokeStreamMethod func(ctx context.Context, self any, args []reflect.Value, yield func(any) error) error
}

var registry = struct {
	sync.RWMutex
	funcs  map[string]*registeredFunc
	digest string
}{funcs: map[string]*registeredFunc{}}

// RegisterFunction registers fn under name; invoke calls it with decoded
// arguments (fast paths in the sdk avoid reflection for each arity).
func RegisterFunction(name string, fn any, invoke func(ctx context.Context, args []reflect.Value) (any, error)) {
	register(name, fn, invoke)
}

// RegisterStreamFunction registers a generator taking nparams arguments
// (after the context) and a yield function.
func RegisterStreamFunction(name string, fn any, nparams int, invoke func(ctx context.Context, args []reflect.Value, yield func(any) error) error) {
	rf := register(name, fn, nil)
	rf.params = rf.params[:nparams]
	rf.invokeStream = invoke
}

func register(name string, fn any, invoke func(ctx context.Context, args []reflect.Value) (any, error)) *registeredFunc {
	if name == "" {
		panic("goray: Register: empty function name")
	}
	t := reflect.TypeOf(fn)
	rf := &registeredFunc{name: name, signature: t.String(), fn: reflect.ValueOf(fn), invoke: invoke}
	for i := 1; i < t.NumIn(); i++ {
		rf.params = append(rf.params, t.In(i))
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.funcs[name]; dup {
		panic(fmt.Sprintf("goray: function %q registered twice", name))
	}
	registry.funcs[name] = rf
	registry.digest = ""
	return rf
}

func lookupFunc(name string) (*registeredFunc, bool) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.funcs[name]
	return f, ok
}

// functionTable lists the registry for the GCS and computes its digest.
func functionTable() (*protos.FunctionTable, string) {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.funcs))
	for n := range registry.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	table := &protos.FunctionTable{}
	for _, n := range names {
		f := registry.funcs[n]
		table.Functions = append(table.Functions, &protos.FunctionDescriptor{Name: n, Signature: f.signature})
		fmt.Fprintf(h, "%s\x00%s\x00", n, f.signature)
	}
	if registry.digest == "" {
		registry.digest = hex.EncodeToString(h.Sum(nil))[:16]
	}
	table.Digest = registry.digest
	return table, registry.digest
}

// decodeArgs decodes a task's arguments into the function's parameter
// types, naming the function and argument on failure.
func (f *registeredFunc) decodeArgs(args []*protos.TaskArg, read func(*protos.TaskArg) ([]byte, error)) ([]reflect.Value, error) {
	if len(args) != len(f.params) {
		return nil, fmt.Errorf("%w: function %s takes %d arguments, got %d", ErrArgument, f.name, len(f.params), len(args))
	}
	out := make([]reflect.Value, len(args))
	for i, a := range args {
		d := a.GetValue()
		if d.GetError() != nil {
			return nil, taskErrorFromProto(d.GetError())
		}
		data, err := read(a)
		if err != nil {
			return nil, fmt.Errorf("%w: function %s argument %d (%s): %v", ErrArgument, f.name, i, f.params[i], err)
		}
		v, err := decodeReflect(f.params[i], d, data)
		if err != nil {
			return nil, fmt.Errorf("%w: function %s argument %d (%s): %v", ErrArgument, f.name, i, f.params[i], err)
		}
		out[i] = v
	}
	return out, nil
}
