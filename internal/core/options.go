package core

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// CallOption sets an option of a task call (see Func*.Options).
type CallOption func(*CallOptions)

type CallOptions struct {
	resources  map[string]float64
	maxRetries int
	// retryOn decides whether an application error is retried; nil means
	// application errors are not retried (Ray's retry_exceptions=False).
	retryOn func(error) bool
	name    string
	// stream marks a generator call: its items come back as a Stream.
	stream bool
	// strategy says where the task may run.
	strategy Strategy
	// env is the task's runtime env (TaskRuntimeEnv), resolved once per
	// options value into shape.
	env []RuntimeEnvPart
	// shape caches the resources in wire form and as a queue key: every
	// call of a function handle shares them.
	shape *shapeCache
}

type shapeCache struct {
	once  sync.Once
	proto *protos.Resources
	key   string
	err   error
	env   resolvedEnv
}

func (o CallOptions) resourceShape() (*protos.Resources, string, error) {
	c := o.shape
	c.once.Do(func() {
		if err := o.strategy.validate(); err != nil {
			c.err = err
			return
		}
		demand := o.resources
		if o.strategy.kind == protos.SchedulingStrategy_PLACEMENT_GROUP {
			demand = groupDemand(demand, o.strategy.group, o.strategy.bundle)
		}
		rs, err := raylet.FromMap(demand)
		if err != nil {
			c.err = err
			return
		}
		c.proto, c.key = rs.Proto(), rs.Key()+o.strategy.key()
	})
	return c.proto, c.key, c.err
}

func DefaultCallOptions() CallOptions {
	return CallOptions{resources: map[string]float64{"CPU": 1}, maxRetries: 3, shape: &shapeCache{}}
}

// With returns a copy of o with opts applied.
func (o CallOptions) With(opts ...CallOption) CallOptions {
	n := o.clone()
	for _, f := range opts {
		f(&n)
	}
	return n
}

// StreamCallOptions are the defaults of a generator: never retried, as
// items already consumed cannot be taken back.
func StreamCallOptions() CallOptions {
	o := DefaultCallOptions()
	o.stream, o.maxRetries = true, 0
	return o
}

// AsStream marks o as a generator call's (which is never retried).
func (o CallOptions) AsStream() CallOptions {
	o.stream, o.maxRetries = true, 0
	return o
}

func (o CallOptions) clone() CallOptions {
	o.resources = maps.Clone(o.resources)
	o.env = slices.Clip(o.env)
	o.shape = &shapeCache{}
	return o
}

func setResource(name string, v float64) CallOption {
	return func(o *CallOptions) {
		if v == 0 {
			delete(o.resources, name)
			return
		}
		o.resources[name] = v
	}
}

// NumCPUs sets the CPUs a call needs (default 1; fractions allowed; 0 runs
// the task without holding a CPU).
func NumCPUs(n float64) CallOption { return setResource("CPU", n) }

// NumGPUs sets the GPUs a call needs.
func NumGPUs(n float64) CallOption { return setResource("GPU", n) }

// Memory sets the bytes of memory a call reserves for scheduling.
func Memory(bytes float64) CallOption { return setResource("memory", bytes) }

// Resources adds custom resource demands, e.g. {"TPU": 1}.
func Resources(r map[string]float64) CallOption {
	return func(o *CallOptions) {
		for k, v := range r {
			setResource(k, v)(o)
		}
	}
}

// MaxRetries sets how often a task is re-run after its worker died (and,
// with RetryExceptions, after it failed): default 3, -1 for no limit.
func MaxRetries(n int) CallOption { return func(o *CallOptions) { o.maxRetries = n } }

// RetryExceptions retries tasks that return an error. With no errors given
// every error is retried; otherwise only errors matching one of them by
// errors.Is.
func RetryExceptions(errs ...error) CallOption {
	return func(o *CallOptions) {
		if len(errs) == 0 {
			o.retryOn = func(error) bool { return true }
			return
		}
		o.retryOn = func(err error) bool {
			for _, e := range errs {
				if errors.Is(err, e) {
					return true
				}
			}
			return false
		}
	}
}

// RetryIf retries tasks whose error satisfies pred (use errors.As in it to
// retry chosen error types).
func RetryIf(pred func(error) bool) CallOption {
	return func(o *CallOptions) { o.retryOn = pred }
}

// Name sets the task's display name (logs, state API).
func Name(name string) CallOption { return func(o *CallOptions) { o.name = name } }

// runtimeEnv resolves the task's runtime env once per options value
// (packing and uploading a working directory the first time), and the
// suffix of its queue key.
func (o CallOptions) runtimeEnv(ctx context.Context, cw *Worker) (*protos.RuntimeEnv, string, error) {
	r := &o.shape.env
	if len(o.env) == 0 && cw.ownEnv == nil {
		return nil, "", nil
	}
	r.once.Do(func() {
		r.proto, r.err = cw.resolveEnv(ctx, o.env)
		r.key = envQueueKey(r.proto)
	})
	return r.proto, r.key, r.err
}
