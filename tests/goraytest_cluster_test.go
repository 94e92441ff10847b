package tests

import (
	"context"
	"errors"
	"testing"

	"github.com/goray/goray/goraytest"
	"github.com/goray/goray/sdk"
)

// nodeOfTask reports the node a task ran on.
var nodeOfTask = sdk.Register1("tests.nodeOfTask", func(ctx context.Context, _ int) (sdk.NodeID, error) {
	return sdk.GetRuntimeContext(ctx).NodeID, nil
})

// TestGoraytestThreeNodesKillOne starts three node processes with
// goraytest, runs a task on each, kills one as a machine failing, and
// checks the cluster notices and keeps running tasks on the others, while
// one pinned to the dead node fails as unschedulable.
func TestGoraytestThreeNodesKillOne(t *testing.T) {
	c := goraytest.NewCluster(t, goraytest.NodeSpec{CPUs: 1})
	second := c.AddNode(goraytest.NodeSpec{CPUs: 1})
	doomed := c.AddNode(goraytest.NodeSpec{CPUs: 1, Labels: map[string]string{"role": "doomed"}})
	ctx := c.Connect(sdk.LogToDriver(false))
	if err := c.WaitForNodes(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*goraytest.Node{c.Head(), second, doomed} {
		got, err := nodeOfTask.Options(sdk.Scheduling(sdk.NodeAffinity(n.ID(), false))).Remote(ctx, 0).Get(ctx)
		if err != nil {
			t.Fatalf("task on %s: %v", n, err)
		}
		if got != n.ID() {
			t.Fatalf("task pinned to %s ran on %s", n.ID(), got)
		}
	}

	doomed.Kill()
	if err := c.WaitNodeDead(ctx, doomed.ID()); err != nil {
		t.Fatal(err)
	}
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, n := range st.Nodes {
		if n.Alive {
			alive++
		}
		if n.ID == doomed.ID() && n.Alive {
			t.Fatalf("killed node %s still alive in ClusterStatus", n.ID)
		}
	}
	if alive != 2 {
		t.Fatalf("%d nodes alive after the kill, want 2", alive)
	}

	refs := make([]sdk.Ref[sdk.NodeID], 20)
	for i := range refs {
		refs[i] = nodeOfTask.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx, i)
	}
	ran, err := sdk.GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ran {
		if id == doomed.ID() {
			t.Fatalf("a task ran on the killed node %s", id)
		}
	}
	_, err = nodeOfTask.Options(sdk.Scheduling(sdk.NodeAffinity(doomed.ID(), false))).Remote(ctx, 0).Get(ctx)
	if !errors.Is(err, sdk.ErrUnschedulable) {
		t.Fatalf("task pinned to the dead node: got %v, want ErrUnschedulable", err)
	}
}
