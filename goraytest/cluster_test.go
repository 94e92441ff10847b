package goraytest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/goray/goray/goraytest"
	"github.com/goray/goray/sdk"
)

func TestMain(m *testing.M) { goraytest.Main(m) }

// whereAmI returns the id of the node it ran on.
var whereAmI = sdk.Register1("goraytest_test.whereAmI", func(ctx context.Context, _ int) (string, error) {
	return nodeOf(ctx).String(), nil
})

func nodeOf(ctx context.Context) sdk.NodeID { return sdk.GetRuntimeContext(ctx).NodeID }

func onNode(id sdk.NodeID) sdk.Option { return sdk.Scheduling(sdk.NodeAffinity(id, false)) }

// runOn runs whereAmI pinned to node id and checks it ran there.
func runOn(ctx context.Context, t *testing.T, id sdk.NodeID) {
	t.Helper()
	got, err := whereAmI.Options(onNode(id)).Remote(ctx, 0).Get(ctx)
	if err != nil {
		t.Fatalf("task pinned to node %s: %v", id, err)
	}
	if got != id.String() {
		t.Fatalf("task pinned to node %s ran on %s", id, got)
	}
}

func TestStart(t *testing.T) {
	ctx := goraytest.Start(t, sdk.NodeCPUs(1))
	node := nodeOf(ctx)
	if node.IsZero() {
		t.Fatal("the driver has no node")
	}
	runOn(ctx, t, node)
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 {
		t.Fatalf("the embedded cluster has %d nodes, want 1", len(st.Nodes))
	}
}

func TestClusterNodeFailure(t *testing.T) {
	c := goraytest.NewCluster(t, goraytest.NodeSpec{CPUs: 1})
	zoned := c.AddNode(goraytest.NodeSpec{CPUs: 1, Labels: map[string]string{"zone": "a"}})
	doomed := c.AddNode(goraytest.NodeSpec{CPUs: 1})
	ctx := c.Connect()
	if err := c.WaitForNodes(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if nodes := c.Nodes(); len(nodes) != 3 || nodes[0] != c.Head() {
		t.Fatalf("Nodes() = %v, want the head and two nodes", nodes)
	}
	if driver := nodeOf(ctx); driver != c.Head().ID() {
		t.Errorf("the driver is on node %s, want the head %s", driver, c.Head().ID())
	}
	for _, n := range c.Nodes() {
		runOn(ctx, t, n.ID())
	}
	got, err := whereAmI.Options(sdk.Scheduling(sdk.Labels(map[string][]string{"zone": {"a"}}))).Remote(ctx, 0).Get(ctx)
	if err != nil || got != zoned.ID().String() {
		t.Fatalf("task for zone a ran on %q (%v), want %s", got, err, zoned.ID())
	}

	doomed.Kill()
	if err := c.WaitNodeDead(ctx, doomed.ID()); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForNodes(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if segs, _ := filepath.Glob(fmt.Sprintf("/dev/shm/goray-%d-*", doomed.PID())); len(segs) > 0 {
		t.Errorf("the killed node's segments %v are still there", segs)
	}
	if nodes := c.Nodes(); len(nodes) != 2 {
		t.Fatalf("after Kill, Nodes() = %v, want 2", nodes)
	}
	for _, n := range c.Nodes() {
		runOn(ctx, t, n.ID())
	}
	alive := map[string]bool{c.Head().ID().String(): true, zoned.ID().String(): true}
	refs := make([]sdk.Ref[string], 4)
	for i := range refs {
		refs[i] = whereAmI.Remote(ctx, i)
	}
	for _, r := range refs {
		got, err := r.Get(ctx)
		if err != nil || !alive[got] {
			t.Fatalf("task after the kill ran on %q (%v), want a live node", got, err)
		}
	}

	zoned.Remove()
	if err := c.WaitNodeDead(ctx, zoned.ID()); err != nil {
		t.Fatal(err)
	}
	runOn(ctx, t, c.Head().ID())
}
