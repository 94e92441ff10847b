package serve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/sdk"
)

// Handle calls a deployment of an application from any goray driver,
// task or actor. It travels as the application's and deployment's names;
// a handle without an application (HandleOf, in a bound argument) calls
// within the application of the replica using it.
type Handle[T any] struct {
	App        string
	Deployment string
	bound      *boundSpec
}

// HandleOf is a handle of a bound deployment, to put in another's
// argument: the bound deployment joins the application.
func HandleOf[T any](b *Bound[T]) Handle[T] {
	return Handle[T]{Deployment: b.spec.name, bound: &b.spec}
}

func (h Handle[T]) boundOf() *boundSpec { return h.bound }

// EncodeMsgpack sends the names only.
func (h Handle[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	return enc.Encode([2]string{h.App, h.Deployment})
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (h *Handle[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	var v [2]string
	if err := dec.Decode(&v); err != nil {
		return err
	}
	h.App, h.Deployment, h.bound = v[0], v[1], nil
	return nil
}

// Method is a typed method of a deployment, called through handles.
type Method[T, A, R any] struct {
	dep string
	d   interface {
		actor(replicaRef) (sdk.Actor[replica[T]], error)
	}
	m *sdk.Method1[replica[T], A, R]
}

// NewMethod registers fn as the method name of deployment d's replicas,
// at package init.
func NewMethod[T, D, A, R any](d *Deployment[T, D], name string, fn func(*T, context.Context, A) (R, error)) *Method[T, A, R] {
	m := sdk.NewMethod1(d.class, name, func(r *replica[T], ctx context.Context, a A) (R, error) {
		defer r.enter()()
		return fn(r.inner, withReplica(ctx, r.init), a)
	})
	return &Method[T, A, R]{dep: d.name, d: d, m: m}
}

// Response is the future of a handle call.
type Response[R any] struct {
	ref  sdk.Ref[R]
	err  error
	done func(missing bool)
}

// Get waits for the call's result.
func (r Response[R]) Get(ctx context.Context) (R, error) {
	if r.err != nil {
		var zero R
		return zero, r.err
	}
	v, err := r.ref.Get(ctx)
	if r.done != nil {
		r.done(missingReplica(err))
	}
	return v, err
}

// Ref is the call's object ref, to pass to another call without waiting.
func (r Response[R]) Ref() sdk.Ref[R] { return r.ref }

// Remote calls the method on a replica of the handle's deployment, chosen
// by the power of two choices over this process's calls in flight.
func (m *Method[T, A, R]) Remote(ctx context.Context, h Handle[T], a A) Response[R] {
	if h.Deployment != m.dep {
		return Response[R]{err: fmt.Errorf("serve: method of deployment %s called through a handle of %s", m.dep, h.Deployment)}
	}
	app := h.App
	if app == "" {
		app = appOf(ctx)
	}
	ref, done, err := routes.pick(ctx, app, h.Deployment)
	if err != nil {
		return Response[R]{err: err}
	}
	actor, err := m.d.actor(ref)
	if err != nil {
		done(false)
		return Response[R]{err: err}
	}
	return Response[R]{ref: m.m.Remote(ctx, actor, a), done: done}
}

// routes is this process's view of the replicas it calls.
var routes = router{sets: map[string]*replicaSet{}}

// replicaRefresh is how often a process asks the controller for the
// replicas of a deployment it calls.
const replicaRefresh = time.Second

type router struct {
	mu   sync.Mutex
	sets map[string]*replicaSet
}

type replicaSet struct {
	mu       sync.Mutex
	refs     []replicaRef
	inflight []*atomic.Int64
	// failed is when a call to each replica last failed for want of the
	// replica (it died or restarts): it is passed over for replicaPenalty.
	failed  []time.Time
	fetched time.Time
}

// replicaPenalty is how long a replica a call found dead is passed over,
// while others are ready.
const replicaPenalty = 2 * time.Second

func deploymentKey(app, dep string) string { return app + "/" + dep }

// pick chooses a replica; done must be called when its call ends, with
// whether the replica was missing (died, restarting), so that the next
// picks pass it over for a while.
func (r *router) pick(ctx context.Context, app, dep string) (replicaRef, func(missing bool), error) {
	key := deploymentKey(app, dep)
	r.mu.Lock()
	set := r.sets[key]
	if set == nil {
		set = &replicaSet{}
		r.sets[key] = set
	}
	r.mu.Unlock()
	set.mu.Lock()
	defer set.mu.Unlock()
	if len(set.refs) == 0 || time.Since(set.fetched) > replicaRefresh {
		refs, err := fetchReplicas(ctx, app, dep)
		if err != nil && len(set.refs) == 0 {
			return nil, nil, err
		}
		if err == nil {
			set.update(refs)
		}
	}
	if len(set.refs) == 0 {
		return nil, nil, fmt.Errorf("serve: deployment %s of application %s has no replica ready", dep, app)
	}
	// Two at random, among those no call found missing lately (all, if
	// none is left), the one with fewer calls in flight.
	now := time.Now()
	ok := make([]int, 0, len(set.refs))
	for i := range set.refs {
		if now.Sub(set.failed[i]) > replicaPenalty {
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		for i := range set.refs {
			ok = append(ok, i)
		}
	}
	i, j := ok[rand.IntN(len(ok))], ok[rand.IntN(len(ok))]
	if set.inflight[j].Load() < set.inflight[i].Load() {
		i = j
	}
	c, ref := set.inflight[i], set.refs[i]
	c.Add(1)
	return ref, func(missing bool) {
		c.Add(-1)
		if missing {
			set.mu.Lock()
			for k := range set.refs {
				if string(set.refs[k]) == string(ref) {
					set.failed[k] = time.Now()
				}
			}
			set.mu.Unlock()
		}
	}, nil
}

// update takes a fresh list of replicas, keeping what it knew of those it
// had (calls in flight, failures).
func (s *replicaSet) update(refs []replicaRef) {
	old := map[string]int{}
	for i, r := range s.refs {
		old[string(r)] = i
	}
	inflight, failed := make([]*atomic.Int64, len(refs)), make([]time.Time, len(refs))
	for i, r := range refs {
		if k, ok := old[string(r)]; ok {
			inflight[i], failed[i] = s.inflight[k], s.failed[k]
		} else {
			inflight[i] = new(atomic.Int64)
		}
	}
	s.refs, s.inflight, s.failed, s.fetched = refs, inflight, failed, time.Now()
}

// missingReplica reports whether a call failed because its replica was
// gone (died, or restarting), not because of what it ran.
func missingReplica(err error) bool {
	return errors.Is(err, sdk.ErrActorDied) || errors.Is(err, sdk.ErrActorUnavailable)
}

// fetchReplicas asks the controller for a deployment's ready replicas.
func fetchReplicas(ctx context.Context, app, dep string) ([]replicaRef, error) {
	c, err := controllerHandle(ctx)
	if err != nil {
		return nil, err
	}
	refs, err := ctrlReplicas.Remote(ctx, c, deploymentKey(app, dep)).Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("serve: replicas of %s/%s: %w", app, dep, err)
	}
	out := make([]replicaRef, len(refs))
	for i, r := range refs {
		out[i] = r
	}
	return out, nil
}
