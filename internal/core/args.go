package core

import (
	"context"
	"fmt"
	"sync"

	"github.com/goray/goray/protos"
)

// Arg is a task, actor constructor or method argument: a value, or a ref
// whose value the callee receives once it is ready.
type Arg struct {
	Value any
	Ref   ObjectRef
	IsRef bool
}

// buildArgs encodes the arguments of a task or actor call. Values travel
// inline up to the inline limit; larger ones are put in the node's store
// once and passed by ref. It returns the objects the call keeps alive.
func (cw *Worker) buildArgs(ctx context.Context, fn string, args []Arg) ([]*protos.TaskArg, []protos.ObjectID, error) {
	out := make([]*protos.TaskArg, 0, len(args))
	var refs []protos.ObjectID
	var keep []ObjectRef
	defer func() { keepRefs(keep) }()
	for i, a := range args {
		ta := &protos.TaskArg{}
		if a.IsRef {
			if a.Ref.h == nil {
				return nil, nil, fmt.Errorf("%w: %s argument %d: nil ref", ErrArgument, fn, i)
			}
			if a.Ref.h.err != nil {
				return nil, nil, fmt.Errorf("%w: %s argument %d: %w", ErrArgument, fn, i, a.Ref.h.err)
			}
			ta.Ref = a.Ref.proto()
			refs = append(refs, a.Ref.h.id)
			keep = append(keep, a.Ref)
		} else {
			v, err := encodeValue(a.Value)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %s argument %d: %v", ErrArgument, fn, i, err)
			}
			if len(v.data) > inlineLimit {
				// Large arguments go through the store once, as Ray's
				// put-then-pass, rather than riding in every push.
				ref, err := cw.put(ctx, v)
				if err != nil {
					return nil, nil, fmt.Errorf("%s argument %d: %w", fn, i, err)
				}
				ta.Ref = ref.proto()
				refs = append(refs, ref.h.id)
				keep = append(keep, ref)
			} else {
				ta.Value = v.objectData()
				// Refs nested in the value are held like the call's
				// ref arguments until it returns; the worker registers
				// as their borrower before replying.
				for _, r := range v.refs {
					refs = append(refs, r.h.id)
					keep = append(keep, r)
				}
			}
		}
		out = append(out, ta)
	}
	// The caller counts refs as submitted before keep is released.
	for _, id := range refs {
		cw.objects.addSubmitted(id)
	}
	return out, refs, nil
}

//go:noinline
func keepRefs([]ObjectRef) {}

// resolveArgs waits for the ref arguments to be ready, fills in their
// values (inline data or a store location) and calls done once, with the
// first argument's failure if one failed.
func (cw *Worker) resolveArgs(args []*protos.TaskArg, done func(*TaskError)) {
	var refArgs []*protos.TaskArg
	for _, a := range args {
		if a.Ref != nil {
			refArgs = append(refArgs, a)
		}
	}
	if len(refArgs) == 0 {
		done(nil)
		return
	}
	var mu sync.Mutex
	left := len(refArgs)
	var depErr *TaskError
	arrive := func(a *protos.TaskArg, data *protos.ObjectData, err *TaskError) {
		mu.Lock()
		if err != nil && depErr == nil {
			depErr = err
		}
		a.Value = data
		left--
		last := left == 0
		mu.Unlock()
		if last {
			done(depErr)
		}
	}
	for _, a := range refArgs {
		a := a
		id, _ := protos.ObjectIDFromBytes(a.Ref.GetObjectId())
		if !cw.objects.onReady(id, func() {
			_, data, terr, _ := cw.objects.result(id)
			arrive(a, data, terr)
		}) {
			arrive(a, nil, systemError(protos.ErrorKind_ERROR_KIND_OBJECT_LOST, "", id.TaskID(), "argument object %s is gone", id))
		}
	}
}

// argPins reads a task's arguments, collecting the store pins their views
// take; the pins are dropped when the task ends (see taskEnded). A task
// must copy a []byte or numeric-slice argument it keeps after returning.
type argPins struct {
	cw  *Worker
	ctx context.Context
	ids []protos.ObjectID
}

func (p *argPins) read(a *protos.TaskArg) ([]byte, error) {
	id, _ := protos.ObjectIDFromBytes(a.GetRef().GetObjectId())
	b, pinned, err := p.cw.readData(p.ctx, id, a.GetValue(), a.GetRef().GetOwner())
	if pinned {
		p.ids = append(p.ids, id)
	}
	return b, err
}

// taskEnded runs when a task or actor call finishes, before its reply
// leaves: owners learn of the borrowers its arguments created while the
// caller still holds them, argument pins are dropped, and a worker holding
// borrowed refs collects garbage soon so it gives them back.
func (cw *Worker) taskEnded(p *argPins) {
	cw.objects.flushBorrows()
	cw.releasePins(p.ids)
	p.ids = nil
	cw.gcSoon()
}
