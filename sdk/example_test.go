package sdk_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/goray/goray/sdk"
)

// Examples run in this test binary, so its workers re-run it: TestMain
// hands them to goray first.
func TestMain(m *testing.M) {
	sdk.WorkerMain()
	os.Exit(m.Run())
}

var Square = sdk.Register1("sdk_example.Square", func(ctx context.Context, x int) (int, error) {
	return x * x, nil
})

var Add = sdk.Register2("sdk_example.Add", func(ctx context.Context, a, b int) (int, error) {
	return a + b, nil
})

type Counter struct{ n int }

func (c *Counter) Inc(ctx context.Context, by int) (int, error) {
	c.n += by
	return c.n, nil
}

var CounterActor = sdk.RegisterActor1("sdk_example.Counter", func(ctx context.Context, start int) (*Counter, error) {
	return &Counter{n: start}, nil
})

var CounterInc = sdk.NewMethod1(CounterActor, "Inc", (*Counter).Inc)

var Count = sdk.RegisterStream1("sdk_example.Count", func(ctx context.Context, n int, yield func(int) error) error {
	for i := range n {
		if err := yield(i); err != nil {
			return err
		}
	}
	return nil
})

// Tasks: call a registered function remotely and chain results without
// waiting for them.
func Example() {
	ctx := context.Background()
	if err := sdk.Init(ctx, sdk.NodeCPUs(2), sdk.LogToDriver(false)); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	a := Square.Remote(ctx, 3)       // runs on a worker
	b := Square.Remote(ctx, 4)       // in parallel
	sum := Add.RemoteArgs(ctx, a, b) // waits for a and b on the cluster
	v, err := sum.Get(ctx)
	fmt.Println(v, err)
	// Output: 25 <nil>
}

// Actors: a Go struct living in a worker process, its methods called in
// order.
func ExampleRegisterActor1() {
	ctx := context.Background()
	if err := sdk.Init(ctx, sdk.NodeCPUs(2), sdk.LogToDriver(false)); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	c, err := CounterActor.Options(sdk.NumCPUs(0)).Remote(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	CounterInc.Remote(ctx, c, 1)
	n, err := CounterInc.Remote(ctx, c, 5).Get(ctx)
	fmt.Println(n, err)
	// Output: 16 <nil>
}

// Objects: Put a value once and pass its ref to many tasks; Wait for the
// first results.
func ExampleWait() {
	ctx := context.Background()
	if err := sdk.Init(ctx, sdk.NodeCPUs(2), sdk.LogToDriver(false)); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	x, err := sdk.Put(ctx, 6)
	if err != nil {
		log.Fatal(err)
	}
	refs := []sdk.Ref[int]{Square.RemoteArgs(ctx, x), Add.RemoteArgs(ctx, x, sdk.Val(1))}
	ready, _, err := sdk.Wait(ctx, refs, len(refs))
	if err != nil {
		log.Fatal(err)
	}
	vals, err := sdk.GetAll(ctx, ready)
	fmt.Println(vals, err)
	// Output: [36 7] <nil>
}

// Streams: a generator's items arrive while it runs.
func ExampleRegisterStream1() {
	ctx := context.Background()
	if err := sdk.Init(ctx, sdk.NodeCPUs(2), sdk.LogToDriver(false)); err != nil {
		log.Fatal(err)
	}
	defer sdk.Shutdown()

	for v, err := range Count.Remote(ctx, 3).All(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v)
	}
	// Output:
	// 0
	// 1
	// 2
}
