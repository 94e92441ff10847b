package core

import (
	"context"
	"fmt"
	"reflect"

	"github.com/goray/goray/protos"
)

// ActorHandle names an actor; the process-wide actorState for its id does
// the work.
type ActorHandle struct {
	ID    protos.UniqueID
	Class string
}

// Method names a method of an actor class; Stream marks a generator.
type Method struct {
	Class  string
	Name   string
	Stream bool
}

// CreateActor registers a new actor of class with the GCS and returns its
// handle: a named actor once the GCS has it, an unnamed one at once
// (actorDirectory.createAsync); the constructor runs on a worker
// afterwards. Ref arguments are resolved before the GCS hears of the actor.
func (cw *Worker) CreateActor(ctx context.Context, class *ActorClass, args []Arg, o ActorOptions) (*ActorHandle, error) {
	id := protos.NewUniqueID()
	encoded, argRefs, err := cw.buildArgs(ctx, class.name, args)
	if err != nil {
		return nil, err
	}
	// Constructor arguments stay pinned for the job's life (argRefs are
	// not released): the GCS re-runs the constructor on every restart.
	_ = argRefs
	errCh := make(chan *TaskError, 1)
	cw.resolveArgs(encoded, func(e *TaskError) { errCh <- e })
	select {
	case e := <-errCh:
		if e != nil {
			return nil, e
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	opts := cloneProto(o.p)
	if o.p.GetName() == "" && o.nameSet {
		return nil, fmt.Errorf("%w: actor %s: the actor name is empty (leave Name out for an unnamed actor)", ErrArgument, class.name)
	}
	if opts.GetDetached() && opts.GetName() == "" {
		return nil, fmt.Errorf("%w: actor %s: a detached actor needs a name, or nothing could find it after its driver exits", ErrArgument, class.name)
	}
	if opts.Namespace == "" {
		opts.Namespace = cw.namespace
	}
	if opts.RuntimeEnv, err = cw.resolveEnv(ctx, o.env); err != nil {
		return nil, fmt.Errorf("actor %s: %w", class.name, err)
	}
	if st := opts.GetStrategy(); st.GetKind() == protos.SchedulingStrategy_PLACEMENT_GROUP {
		// The actor's resources come out of its bundle, placed and
		// running alike.
		group, err := protos.UniqueIDFromBytes(st.GetPlacementGroupId())
		if err != nil || st.GetBundleIndex() < -1 {
			return nil, fmt.Errorf("%w: actor %s: placement group strategy: group %x, bundle %d", ErrArgument, class.name, st.GetPlacementGroupId(), st.GetBundleIndex())
		}
		opts.PlacementResources = &protos.Resources{Amounts: groupDemand(opts.GetPlacementResources().GetAmounts(), group, int(st.GetBundleIndex()))}
		opts.RunningResources = &protos.Resources{Amounts: groupDemand(opts.GetRunningResources().GetAmounts(), group, int(st.GetBundleIndex()))}
	}
	spec := &protos.ActorSpec{
		ActorId:        id.Bytes(),
		JobId:          cw.jobID.Bytes(),
		ClassName:      class.name,
		Args:           encoded,
		Options:        opts,
		Owner:          cw.node().addr,
		FunctionDigest: cw.digest,
	}
	info, err := cw.actors().create(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &ActorHandle{ID: protos.MustUniqueID(info.GetActorId()), Class: class.name}, nil
}

// GetActor finds the live actor named name in namespace ("" means the
// job's namespace); typ must be the actor's registered type.
func (cw *Worker) GetActor(ctx context.Context, name, namespace string, typ reflect.Type) (*ActorHandle, error) {
	if namespace == "" {
		namespace = cw.namespace
	}
	g, err := cw.GCS()
	if err != nil {
		return nil, err
	}
	info, err := g.GetNamedActor(ctx, name, namespace)
	if err != nil {
		return nil, fmt.Errorf("goray: GetActor(%q, namespace %q): %w", name, namespace, err)
	}
	actorRegistry.RLock()
	class := actorRegistry.byType[typ]
	actorRegistry.RUnlock()
	if class == nil || class.name != info.GetSpec().GetClassName() {
		return nil, fmt.Errorf("%w: GetActor(%q): the actor is a %s, not a %s", ErrArgument, name, info.GetSpec().GetClassName(), typ)
	}
	return &ActorHandle{ID: protos.MustUniqueID(info.GetActorId()), Class: class.name}, nil
}

// KillActor stops the actor: with noRestart it is dead for good; otherwise
// it is restarted if it has restarts left (as Ray's kill).
func (cw *Worker) KillActor(ctx context.Context, h *ActorHandle, noRestart bool) error {
	g, err := cw.GCS()
	if err != nil {
		return err
	}
	if err := cw.actorDir.awaitRegistered(ctx, h.ID); err != nil {
		if ctx.Err() != nil {
			return err
		}
		// Never registered: dead here already, and unknown to the GCS.
		return nil
	}
	if err := g.KillActor(ctx, h.ID, noRestart); err != nil {
		return err
	}
	// The GCS answered once the actor's new state was stored; its event
	// may reach this process after the caller's next call does. Apply the
	// state now, so calls made after Kill returns see it (Ray: calls
	// after ray.kill fail with ActorDiedError).
	cw.actorDir.mu.Lock()
	st := cw.actorDir.states[h.ID]
	cw.actorDir.mu.Unlock()
	if st != nil {
		if info, err := g.GetActor(ctx, h.ID); err == nil {
			st.update(info)
		}
	}
	return nil
}

// ExitActor, returned from an actor method, ends the actor for good after
// that call (Ray's exit_actor): it is not restarted, and the call's ref
// reports the exit.
func ExitActor(reason string) error { return &actorExit{reason: reason} }

type actorExit struct{ reason string }

func (e *actorExit) Error() string { return "actor exited: " + e.reason }

// AwaitActorRegistered waits, for at most actorRegisterTimeout, until the
// GCS knows the actor h names, so that another process handed h can find
// it: an unnamed actor this process created registers in the background.
// A registration that failed leaves the actor dead, which is what the
// other process then finds.
func (cw *Worker) AwaitActorRegistered(h *ActorHandle) {
	ctx, cancel := context.WithTimeout(cw.actorDir.regCtx, actorRegisterTimeout)
	defer cancel()
	_ = cw.actorDir.awaitRegistered(ctx, h.ID)
}
