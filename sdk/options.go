package sdk

import (
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// CallOption sets an option of a task call (see Func*.Options).
type CallOption func(*callOptions)

type callOptions struct {
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
	// shape caches the resources in wire form and as a queue key: every
	// call of a function handle shares them.
	shape *shapeCache
}

type shapeCache struct {
	once  sync.Once
	proto *protos.Resources
	key   string
	err   error
}

func (o callOptions) resourceShape() (*protos.Resources, string, error) {
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

func defaultCallOptions() callOptions {
	return callOptions{resources: map[string]float64{"CPU": 1}, maxRetries: 3, shape: &shapeCache{}}
}

func (o callOptions) clone() callOptions {
	o.resources = maps.Clone(o.resources)
	o.shape = &shapeCache{}
	return o
}

func setResource(name string, v float64) CallOption {
	return func(o *callOptions) {
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
	return func(o *callOptions) {
		for k, v := range r {
			setResource(k, v)(o)
		}
	}
}

// MaxRetries sets how often a task is re-run after its worker died (and,
// with RetryExceptions, after it failed): default 3, -1 for no limit.
func MaxRetries(n int) CallOption { return func(o *callOptions) { o.maxRetries = n } }

// RetryExceptions retries tasks that return an error. With no errors given
// every error is retried; otherwise only errors matching one of them by
// errors.Is.
func RetryExceptions(errs ...error) CallOption {
	return func(o *callOptions) {
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
	return func(o *callOptions) { o.retryOn = pred }
}

// Name sets the task's display name (logs, state API).
func Name(name string) CallOption { return func(o *callOptions) { o.name = name } }

// GetOption sets an option of Get.
type GetOption func(*getOptions)

type getOptions struct {
	timeout time.Duration
	// noFetch is Wait's fetch_local=False.
	noFetch bool
}

// FetchLocal(false) makes Wait count an object ready as soon as it exists
// anywhere in the cluster (Ray's fetch_local=False). By default Wait counts
// it once it is also in this node's store, pulling it from the node that
// holds it, so that the Get that follows does not wait for the transfer.
func FetchLocal(fetch bool) GetOption { return func(o *getOptions) { o.noFetch = !fetch } }

// Timeout bounds how long Get waits; past it Get returns ErrGetTimeout.
func Timeout(d time.Duration) GetOption { return func(o *getOptions) { o.timeout = d } }
