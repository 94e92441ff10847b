package sdk

import (
	"context"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/protos"
)

// Actor is a handle to an actor of type T. Handles are values: pass them
// to tasks and actors, return them, store them in objects, and use them
// from any goroutine.
type Actor[T any] struct {
	h *actorHandle
}

// actorHandle names an actor; the process-wide actorState for its id does
// the work.
type actorHandle struct {
	id    protos.UniqueID
	class string
}

// ID returns the actor's id.
func (a Actor[T]) ID() protos.UniqueID {
	if a.h == nil {
		return protos.UniqueID{}
	}
	return a.h.id
}

// IsNil reports whether a is the zero handle.
func (a Actor[T]) IsNil() bool { return a.h == nil }

func (a Actor[T]) String() string {
	if a.h == nil {
		return "Actor(nil)"
	}
	return fmt.Sprintf("Actor(%s %s)", a.h.class, a.h.id.Short())
}

var _ msgpack.CustomEncoder = Actor[struct{}]{}

// EncodeMsgpack implements msgpack.CustomEncoder: a handle travels as its
// actor's id and class.
func (a Actor[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	if a.h == nil {
		return enc.EncodeNil()
	}
	return enc.Encode([]string{string(a.h.id[:]), a.h.class})
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
	a.h = &actorHandle{id: id, class: parts[1]}
	return nil
}

func createActor[T any](ctx context.Context, c *ActorClass[T], args ...argSource) (Actor[T], error) {
	cw := current()
	if cw == nil {
		return Actor[T]{}, ErrNotInitialized
	}
	id := protos.NewUniqueID()
	encoded, argRefs, err := cw.buildArgs(ctx, c.info.name, args)
	if err != nil {
		return Actor[T]{}, err
	}
	// Constructor arguments stay pinned for the job's life (argRefs are
	// not released): the GCS re-runs the constructor on every restart.
	_ = argRefs
	errCh := make(chan *TaskError, 1)
	cw.resolveArgs(encoded, func(e *TaskError) { errCh <- e })
	select {
	case e := <-errCh:
		if e != nil {
			return Actor[T]{}, e
		}
	case <-ctx.Done():
		return Actor[T]{}, ctx.Err()
	}
	opts := cloneProto(c.opts.p)
	if opts.Namespace == "" {
		opts.Namespace = cw.namespace
	}
	if st := opts.GetStrategy(); st.GetKind() == protos.SchedulingStrategy_PLACEMENT_GROUP {
		// The actor's resources come out of its bundle, placed and
		// running alike.
		group, err := protos.UniqueIDFromBytes(st.GetPlacementGroupId())
		if err != nil || st.GetBundleIndex() < -1 {
			return Actor[T]{}, fmt.Errorf("%w: actor %s: placement group strategy: group %x, bundle %d", ErrArgument, c.info.name, st.GetPlacementGroupId(), st.GetBundleIndex())
		}
		opts.PlacementResources = &protos.Resources{Amounts: groupDemand(opts.GetPlacementResources().GetAmounts(), group, int(st.GetBundleIndex()))}
		opts.RunningResources = &protos.Resources{Amounts: groupDemand(opts.GetRunningResources().GetAmounts(), group, int(st.GetBundleIndex()))}
	}
	spec := &protos.ActorSpec{
		ActorId:        id.Bytes(),
		JobId:          cw.jobID.Bytes(),
		ClassName:      c.info.name,
		Args:           encoded,
		Options:        opts,
		Owner:          cw.addr,
		FunctionDigest: cw.digest,
	}
	info, err := cw.actors().create(ctx, spec)
	if err != nil {
		return Actor[T]{}, err
	}
	return Actor[T]{h: &actorHandle{id: protos.MustUniqueID(info.GetActorId()), class: c.info.name}}, nil
}

// GetActor finds the live actor named name in namespace ("" means the
// job's namespace). T must be the actor's registered type.
func GetActor[T any](ctx context.Context, name, namespace string) (Actor[T], error) {
	cw := current()
	if cw == nil {
		return Actor[T]{}, ErrNotInitialized
	}
	if namespace == "" {
		namespace = cw.namespace
	}
	g, err := cw.gcsClient()
	if err != nil {
		return Actor[T]{}, err
	}
	info, err := g.GetNamedActor(ctx, name, namespace)
	if err != nil {
		return Actor[T]{}, fmt.Errorf("goray: GetActor(%q, namespace %q): %w", name, namespace, err)
	}
	want := reflect.TypeOf((*T)(nil)).Elem()
	actorRegistry.RLock()
	class := actorRegistry.byType[want]
	actorRegistry.RUnlock()
	if class == nil || class.name != info.GetSpec().GetClassName() {
		return Actor[T]{}, fmt.Errorf("%w: GetActor(%q): the actor is a %s, not a %s", ErrArgument, name, info.GetSpec().GetClassName(), want)
	}
	return Actor[T]{h: &actorHandle{id: protos.MustUniqueID(info.GetActorId()), class: class.name}}, nil
}

// Kill stops the actor: with noRestart it is dead for good; otherwise it is
// restarted if it has restarts left (as Ray's kill).
func Kill[T any](ctx context.Context, a Actor[T], noRestart bool) error {
	cw := current()
	if cw == nil {
		return ErrNotInitialized
	}
	if a.h == nil {
		return fmt.Errorf("%w: Kill of a nil actor handle", ErrArgument)
	}
	g, err := cw.gcsClient()
	if err != nil {
		return err
	}
	return g.KillActor(ctx, a.h.id, noRestart)
}

// ExitActor, returned from an actor method, ends the actor for good after
// that call (Ray's exit_actor): it is not restarted, and the call's ref
// reports the exit.
func ExitActor(reason string) error { return &actorExit{reason: reason} }

type actorExit struct{ reason string }

func (e *actorExit) Error() string { return "actor exited: " + e.reason }
