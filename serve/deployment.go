package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/sdk"
)

// ErrUnknownDeployment: a deployment this binary did not register.
var ErrUnknownDeployment = errors.New("serve: no such deployment registered in this binary")

// Option configures a deployment.
type Option func(*DeploymentOptions)

// DeploymentOptions are a deployment's settings.
type DeploymentOptions struct {
	// NumReplicas is how many replicas serve it (default 1).
	NumReplicas int
	// MaxOngoingRequests bounds the requests one replica runs at once
	// (default 100, Ray Serve's 5 being tuned for Python).
	MaxOngoingRequests int
	// CPUs each replica holds while it lives (default 0: replicas are
	// placed by memory, as Ray Serve's default num_cpus).
	CPUs float64
	// Autoscaling, if set, sizes the deployment by its load instead of
	// NumReplicas.
	Autoscaling *AutoscalingConfig
}

// AutoscalingConfig sizes a deployment by its load, as Ray Serve's
// autoscaling_config: the controller samples the requests each replica
// has in flight and wants ceil(total / TargetOngoingRequests) replicas,
// within [MinReplicas, MaxReplicas]; it adds replicas once that want has
// stood above the current number for UpscaleDelay, and removes them once
// it has stood below for DownscaleDelay.
type AutoscalingConfig struct {
	MinReplicas, MaxReplicas, InitialReplicas int
	TargetOngoingRequests                     float64
	UpscaleDelay, DownscaleDelay              time.Duration
}

// Autoscaling sizes the deployment by its load.
func Autoscaling(c AutoscalingConfig) Option {
	return func(o *DeploymentOptions) {
		if c.TargetOngoingRequests == 0 {
			c.TargetOngoingRequests = 2 // Ray Serve's default
		}
		if c.MaxReplicas == 0 {
			c.MaxReplicas = max(c.MinReplicas, 1)
		}
		if c.InitialReplicas == 0 {
			c.InitialReplicas = max(c.MinReplicas, 1)
		}
		if c.DownscaleDelay == 0 {
			c.DownscaleDelay = time.Minute // Ray Serve's is 10 min
		}
		o.Autoscaling = &c
	}
}

// NumReplicas sets how many replicas serve the deployment.
func NumReplicas(n int) Option { return func(o *DeploymentOptions) { o.NumReplicas = n } }

// MaxOngoingRequests bounds the requests one replica runs at once.
func MaxOngoingRequests(n int) Option { return func(o *DeploymentOptions) { o.MaxOngoingRequests = n } }

// ReplicaCPUs sets the CPUs each replica holds.
func ReplicaCPUs(cpus float64) Option { return func(o *DeploymentOptions) { o.CPUs = cpus } }

func defaultOptions() DeploymentOptions {
	return DeploymentOptions{NumReplicas: 1, MaxOngoingRequests: 100}
}

func (o DeploymentOptions) check(name string) error {
	switch {
	case o.NumReplicas < 1:
		return fmt.Errorf("serve: deployment %s: NumReplicas %d: want at least 1", name, o.NumReplicas)
	case o.MaxOngoingRequests < 1:
		return fmt.Errorf("serve: deployment %s: MaxOngoingRequests %d: want at least 1", name, o.MaxOngoingRequests)
	case o.CPUs < 0:
		return fmt.Errorf("serve: deployment %s: ReplicaCPUs %g: want 0 or more", name, o.CPUs)
	}
	if a := o.Autoscaling; a != nil {
		switch {
		case a.MinReplicas < 0 || a.MaxReplicas < max(a.MinReplicas, 1):
			return fmt.Errorf("serve: deployment %s: autoscaling between %d and %d replicas: want 0 <= min <= max, max >= 1", name, a.MinReplicas, a.MaxReplicas)
		case a.InitialReplicas < a.MinReplicas || a.InitialReplicas > a.MaxReplicas:
			return fmt.Errorf("serve: deployment %s: autoscaling starts with %d replicas, outside [%d, %d]", name, a.InitialReplicas, a.MinReplicas, a.MaxReplicas)
		case a.TargetOngoingRequests <= 0:
			return fmt.Errorf("serve: deployment %s: autoscaling target of %g requests per replica: want more than 0", name, a.TargetOngoingRequests)
		}
	}
	return nil
}

// Deployment is a registered deployment: a Go struct T built by a
// constructor from an argument A.
type Deployment[T, A any] struct {
	name  string
	opts  DeploymentOptions
	class *sdk.ActorClass1[replica[T], replicaInit]
	http  *sdk.Method1[replica[T], HTTPRequest, HTTPResponse]
	ping  *sdk.Method0[replica[T], int]
}

// Register registers a deployment under name (unique in the binary), at
// package init. Its replicas are goray actors of class "serve.<name>".
func Register[T, A any](name string, ctor func(context.Context, A) (*T, error), opts ...Option) *Deployment[T, A] {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if err := o.check(name); err != nil {
		panic(err)
	}
	d := &Deployment[T, A]{name: name, opts: o}
	d.class = sdk.RegisterActor1("serve."+name, func(ctx context.Context, init replicaInit) (*replica[T], error) {
		var a A
		if err := msgpack.Unmarshal(init.Args, &a); err != nil {
			return nil, fmt.Errorf("serve: deployment %s: decode its argument as %T: %w", name, a, err)
		}
		t, err := ctor(withReplica(ctx, init), a)
		if err != nil {
			return nil, err
		}
		return &replica[T]{inner: t, init: init}, nil
	})
	if _, ok := any((*T)(nil)).(http.Handler); ok {
		d.http = sdk.NewMethod1(d.class, "serve.HTTP", (*replica[T]).serveHTTP)
	}
	d.ping = sdk.NewMethod0(d.class, "serve.Ping", (*replica[T]).ping)
	registry.add(name, d)
	return d
}

// Name is the deployment's name.
func (d *Deployment[T, A]) Name() string { return d.name }

// Options returns a copy of d with opts applied, for one application.
func (d *Deployment[T, A]) Options(opts ...Option) *Deployment[T, A] {
	c := *d
	for _, f := range opts {
		f(&c.opts)
	}
	return &c
}

// Bind binds the deployment to its constructor's argument. Handles of
// other bound deployments in the argument (HandleOf, the argument itself
// or its struct fields) bring those deployments into the application.
func (d *Deployment[T, A]) Bind(arg A) *Bound[T] {
	b := &Bound[T]{spec: boundSpec{name: d.name, opts: d.opts}}
	b.spec.arg, b.spec.err = msgpack.Marshal(arg)
	if b.spec.err == nil {
		b.spec.err = d.opts.check(d.name)
	}
	b.spec.deps = handlesIn(reflect.ValueOf(arg))
	return b
}

// Bound is a deployment bound to its argument: an application's ingress,
// or a part of one.
type Bound[T any] struct{ spec boundSpec }

type boundSpec struct {
	name string
	opts DeploymentOptions
	arg  []byte
	err  error
	deps []*boundSpec
}

func (b *Bound[T]) boundSpec() *boundSpec { return &b.spec }

// handlesIn finds the bound deployments of the handles in v: v itself, or
// its fields if it is a struct.
func handlesIn(v reflect.Value) []*boundSpec {
	var out []*boundSpec
	if !v.IsValid() {
		return nil
	}
	if h, ok := v.Interface().(interface{ boundOf() *boundSpec }); ok {
		if b := h.boundOf(); b != nil {
			out = append(out, b)
		}
		return out
	}
	if v.Kind() == reflect.Struct {
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out = append(out, handlesIn(v.Field(i))...)
			}
		}
	}
	return out
}

// deploymentOps is what the controller and the proxies do with a
// deployment they know by name only: the registry holds one per
// Register, typed inside.
type deploymentOps interface {
	start(ctx context.Context, replicaName string, init replicaInit, o DeploymentOptions) (replicaRef, error)
	adopt(ctx context.Context, replicaName string) (replicaRef, error)
	pingReplica(ctx context.Context, r replicaRef) (int, error)
	callHTTP(ctx context.Context, r replicaRef, req HTTPRequest) (HTTPResponse, error)
	kill(ctx context.Context, r replicaRef) error
	servesHTTP() bool
}

// replicaRef is a replica actor's handle, encoded (its id and class), so
// that processes pass it around without knowing its type.
type replicaRef []byte

func (d *Deployment[T, A]) actor(r replicaRef) (sdk.Actor[replica[T]], error) {
	if a, ok := decodedActors.Load(string(r)); ok {
		return a.(sdk.Actor[replica[T]]), nil
	}
	var a sdk.Actor[replica[T]]
	if err := msgpack.Unmarshal(r, &a); err != nil {
		return a, fmt.Errorf("serve: deployment %s: decode a replica handle: %w", d.name, err)
	}
	if decodedCount.Add(1) > maxDecodedActors {
		decodedActors.Clear() // replicas come and go: start over now and then
		decodedCount.Store(0)
	}
	decodedActors.Store(string(r), a)
	return a, nil
}

// decodedActors caches replica handles decoded from their bytes (every
// proxied request and handle call names one).
var (
	decodedActors sync.Map // string(replicaRef) -> sdk.Actor[replica[T]]
	decodedCount  atomic.Int64
)

const maxDecodedActors = 4096

func (d *Deployment[T, A]) start(ctx context.Context, replicaName string, init replicaInit, o DeploymentOptions) (replicaRef, error) {
	a, err := d.class.Options(sdk.Name(replicaName), sdk.Namespace(Namespace), sdk.Detached(), sdk.MaxRestarts(-1),
		sdk.MaxConcurrency(o.MaxOngoingRequests), sdk.NumCPUs(o.CPUs), sdk.Scheduling(sdk.Spread())).Remote(ctx, init)
	if err != nil {
		return nil, err
	}
	return msgpack.Marshal(a)
}

func (d *Deployment[T, A]) adopt(ctx context.Context, replicaName string) (replicaRef, error) {
	a, err := sdk.GetActor[replica[T]](ctx, replicaName, Namespace)
	if err != nil {
		return nil, err
	}
	return msgpack.Marshal(a)
}

func (d *Deployment[T, A]) pingReplica(ctx context.Context, r replicaRef) (int, error) {
	a, err := d.actor(r)
	if err != nil {
		return 0, err
	}
	return d.ping.Remote(ctx, a).Get(ctx)
}

func (d *Deployment[T, A]) callHTTP(ctx context.Context, r replicaRef, req HTTPRequest) (HTTPResponse, error) {
	if d.http == nil {
		return HTTPResponse{}, fmt.Errorf("serve: deployment %s does not serve HTTP (its struct is no http.Handler)", d.name)
	}
	a, err := d.actor(r)
	if err != nil {
		return HTTPResponse{}, err
	}
	return d.http.Remote(ctx, a, req).Get(ctx)
}

func (d *Deployment[T, A]) kill(ctx context.Context, r replicaRef) error {
	a, err := d.actor(r)
	if err != nil {
		return err
	}
	return sdk.Kill(ctx, a, true)
}

func (d *Deployment[T, A]) servesHTTP() bool { return d.http != nil }

// registry holds this binary's deployments by name.
var registry = deploymentRegistry{byName: map[string]deploymentOps{}}

type deploymentRegistry struct {
	mu     sync.RWMutex
	byName map[string]deploymentOps
}

func (r *deploymentRegistry) add(name string, d deploymentOps) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[name]; dup {
		panic(fmt.Sprintf("serve: deployment %q registered twice", name))
	}
	r.byName[name] = d
}

func (r *deploymentRegistry) get(name string) (deploymentOps, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (serve.Register it at package init)", ErrUnknownDeployment, name)
	}
	return d, nil
}
