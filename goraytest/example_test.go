package goraytest_test

import (
	"context"
	"testing"

	"github.com/goray/goray/goraytest"
	"github.com/goray/goray/sdk"
)

// square is registered at package level, so that the workers (the test
// binary run again) have it too.
var square = sdk.Register1("goraytest_test.square", func(_ context.Context, x int) (int, error) {
	return x * x, nil
})

// A test binary that uses goray hands its processes to goraytest in
// TestMain; each test then starts a cluster of its own. This example is
// compiled, not run: its tests would need the TestMain of their own test
// binary.
func Example() {
	// In a _test.go file of the package:
	//
	//	func TestMain(m *testing.M) { goraytest.Main(m) }
	testMain := func(m *testing.M) { goraytest.Main(m) }

	// A test on the embedded single-node cluster.
	testSquare := func(t *testing.T) {
		ctx := goraytest.Start(t)
		got, err := square.Remote(ctx, 7).Get(ctx)
		if err != nil || got != 49 {
			t.Fatalf("square(7) = %d, %v", got, err)
		}
	}

	// A test on three node processes, one of which fails.
	testNodeFailure := func(t *testing.T) {
		c := goraytest.NewCluster(t, goraytest.NodeSpec{CPUs: 1})
		c.AddNode(goraytest.NodeSpec{CPUs: 2})
		doomed := c.AddNode(goraytest.NodeSpec{CPUs: 2, Labels: map[string]string{"zone": "b"}})
		ctx := c.Connect()
		if err := c.WaitForNodes(ctx, 3); err != nil {
			t.Fatal(err)
		}
		doomed.Kill() // SIGKILL, as a machine failing
		if err := c.WaitNodeDead(ctx, doomed.ID()); err != nil {
			t.Fatal(err)
		}
		if got, err := square.Remote(ctx, 3).Get(ctx); err != nil || got != 9 {
			t.Fatalf("square(3) after the failure = %d, %v", got, err)
		}
	}
	_, _, _ = testMain, testSquare, testNodeFailure
}
