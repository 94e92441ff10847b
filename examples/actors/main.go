// Actors: a counter, and a small long-running service (a key-value cache
// that other tasks share through its handle), on an embedded cluster.
// Run it with `go run ./examples/actors`.
package main

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/goray/goray/sdk"
)

// Counter is an ordinary Go struct; goray runs it on a worker process of
// its own and calls its methods one at a time, in order.
type Counter struct{ n int }

func (c *Counter) Inc(ctx context.Context, by int) (int, error) {
	c.n += by
	return c.n, nil
}

// Cache is a long-running service: it serves reads concurrently (its own
// locking) and is found by name.
type Cache struct {
	mu   sync.RWMutex
	data map[string]string
	hits int
}

func (c *Cache) Put(ctx context.Context, kv [2]string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data[kv[0]] = kv[1]
	return len(c.data), nil
}

func (c *Cache) Lookup(ctx context.Context, key string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hits++
	return c.data[key], nil
}

// Watch streams the cache's keys, one item at a time.
func (c *Cache) Watch(ctx context.Context, prefix string, yield func(string) error) error {
	c.mu.RLock()
	keys := make([]string, 0, len(c.data))
	for k := range c.data {
		keys = append(keys, k)
	}
	c.mu.RUnlock()
	for _, k := range keys {
		if err := yield(k); err != nil {
			return err
		}
	}
	return nil
}

var (
	CounterActor = sdk.RegisterActor1("actors.Counter", func(ctx context.Context, start int) (*Counter, error) {
		return &Counter{n: start}, nil
	})
	CounterInc = sdk.NewMethod1(CounterActor, "Inc", (*Counter).Inc)

	CacheActor = sdk.RegisterActor0("actors.Cache", func(ctx context.Context) (*Cache, error) {
		return &Cache{data: map[string]string{}}, nil
	})
	CachePut    = sdk.NewMethod1(CacheActor, "Put", (*Cache).Put)
	CacheLookup = sdk.NewMethod1(CacheActor, "Lookup", (*Cache).Lookup)
	CacheWatch  = sdk.NewStreamMethod1(CacheActor, "Watch", (*Cache).Watch)

	// Greet is a task that finds the cache by name and uses it.
	Greet = sdk.Register1("actors.Greet", func(ctx context.Context, who string) (string, error) {
		cache, err := sdk.GetActor[Cache](ctx, "cache", "")
		if err != nil {
			return "", err
		}
		greeting, err := CacheLookup.Remote(ctx, cache, "greeting").Get(ctx)
		return greeting + ", " + who, err
	})
)

func main() {
	ctx := context.Background()
	if err := sdk.Init(ctx); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	counter, err := CounterActor.Remote(ctx, 0)
	must(err)
	refs := make([]sdk.Ref[int], 10)
	for i := range refs {
		refs[i] = CounterInc.Remote(ctx, counter, 1)
	}
	vals, err := sdk.GetAll(ctx, refs)
	must(err)
	fmt.Println("counter after 10 calls:", vals[9])

	cache, err := CacheActor.Options(sdk.Name("cache"), sdk.MaxConcurrency(8), sdk.MaxRestarts(3)).Remote(ctx)
	must(err)
	_, err = CachePut.Remote(ctx, cache, [2]string{"greeting", "hello"}).Get(ctx)
	must(err)
	msg, err := Greet.Remote(ctx, "goray").Get(ctx)
	must(err)
	fmt.Println(msg)
	for key, err := range CacheWatch.Remote(ctx, cache, "").All(ctx) {
		must(err)
		fmt.Println("cache key:", key)
	}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
