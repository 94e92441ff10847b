package sdk

import (
	"context"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/internal/core"
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
//	var CounterInc = sdk.NewMethod1(CounterActor, "Inc", (*Counter).Inc)
//
//	c, err := CounterActor.Remote(ctx, 10)          // sdk.Actor[Counter]
//	n, err := CounterInc.Remote(ctx, c, 1).Get(ctx) // 11
//
// The actor runs on a worker process of its own (as Ray's), its methods one
// at a time in the order each caller submitted them.

// Actor is a handle to an actor of type T. Handles are values: pass them
// to tasks and actors, return them, store them in objects, and use them
// from any goroutine.
type Actor[T any] struct {
	h *core.ActorHandle
}

// ID returns the actor's id.
func (a Actor[T]) ID() ActorID {
	if a.h == nil {
		return ActorID{}
	}
	return ActorID(a.h.ID)
}

// IsNil reports whether a is the zero handle.
func (a Actor[T]) IsNil() bool { return a.h == nil }

func (a Actor[T]) String() string {
	if a.h == nil {
		return "Actor(nil)"
	}
	return fmt.Sprintf("Actor(%s %s)", a.h.Class, a.h.ID.Short())
}

var _ msgpack.CustomEncoder = Actor[struct{}]{}

// EncodeMsgpack implements msgpack.CustomEncoder: a handle travels as its
// actor's id and class, once the GCS knows the actor (an unnamed actor
// registers in the background), so that whoever decodes it finds it.
func (a Actor[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	if a.h == nil {
		return enc.EncodeNil()
	}
	if w := core.Current(); w != nil {
		w.AwaitActorRegistered(a.h)
	}
	return enc.Encode([]string{string(a.h.ID[:]), a.h.Class})
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (a *Actor[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	var parts []string
	if err := dec.Decode(&parts); err != nil {
		return err
	}
	if parts == nil {
		a.h = nil
		return nil
	}
	if len(parts) != 2 {
		return fmt.Errorf("decode actor handle: want id and class, got %d fields", len(parts))
	}
	id, err := protos.UniqueIDFromBytes([]byte(parts[0]))
	if err != nil {
		return fmt.Errorf("decode actor handle: %w", err)
	}
	a.h = &core.ActorHandle{ID: id, Class: parts[1]}
	return nil
}

// ActorClass is the part of every registered actor class that names it.
type ActorClass[T any] struct {
	info *core.ActorClass
	opts core.ActorOptions
}

func newActorClass[T any](info *core.ActorClass) ActorClass[T] {
	return ActorClass[T]{info: info, opts: core.DefaultActorOptions()}
}

// Name returns the registered class name.
func (c *ActorClass[T]) Name() string { return c.info.Name() }

func (c *ActorClass[T]) class() *ActorClass[T] { return c }

// actorClassOf is satisfied by every ActorClassN of T.
type actorClassOf[T any] interface{ class() *ActorClass[T] }

func (c *ActorClass[T]) withOptions(opts []ActorOption) ActorClass[T] {
	return ActorClass[T]{info: c.info, opts: actorOptions(c.opts, opts)}
}

func createActor[T any](ctx context.Context, c *ActorClass[T], args ...core.Arg) (Actor[T], error) {
	w := core.Current()
	if w == nil {
		return Actor[T]{}, ErrNotInitialized
	}
	h, err := w.CreateActor(ctx, c.info, args, c.opts)
	if err != nil {
		return Actor[T]{}, publicError(err)
	}
	return Actor[T]{h: h}, nil
}

// method names a method of an actor class.
type method struct {
	class string
	name  string
}

func callMethod[R any](ctx context.Context, h *core.ActorHandle, m method, args ...core.Arg) Ref[R] {
	w := core.Current()
	if w == nil {
		return failedRef[R](ErrNotInitialized)
	}
	if h == nil {
		return failedRef[R](fmt.Errorf("%w: call of %s.%s on a nil actor handle", ErrArgument, m.class, m.name))
	}
	ref, err := w.CallActor(ctx, h, core.Method{Class: m.class, Name: m.name}, args)
	if err != nil {
		return failedRef[R](err)
	}
	return Ref[R]{ObjectRef{ref}}
}

func callStream[R any](ctx context.Context, h *core.ActorHandle, m method, args ...core.Arg) *Stream[R] {
	w := core.Current()
	if w == nil {
		return failedStream[R](ErrNotInitialized)
	}
	if h == nil {
		return failedStream[R](fmt.Errorf("%w: call of %s.%s on a nil actor handle", ErrArgument, m.class, m.name))
	}
	s, err := w.CallActorStream(ctx, h, core.Method{Class: m.class, Name: m.name}, args)
	if err != nil {
		return failedStream[R](err)
	}
	return &Stream[R]{s: s}
}

// GetActor finds the live actor named name in namespace ("" means the
// job's namespace). T must be the actor's registered type.
func GetActor[T any](ctx context.Context, name, namespace string) (Actor[T], error) {
	w := core.Current()
	if w == nil {
		return Actor[T]{}, ErrNotInitialized
	}
	h, err := w.GetActor(ctx, name, namespace, reflect.TypeFor[T]())
	if err != nil {
		return Actor[T]{}, err
	}
	return Actor[T]{h: h}, nil
}

// Kill stops the actor: with noRestart it is dead for good; otherwise it is
// restarted if it has restarts left (as Ray's kill).
func Kill[T any](ctx context.Context, a Actor[T], noRestart bool) error {
	w := core.Current()
	if w == nil {
		return ErrNotInitialized
	}
	if a.h == nil {
		return fmt.Errorf("%w: Kill of a nil actor handle", ErrArgument)
	}
	return w.KillActor(ctx, a.h, noRestart)
}
