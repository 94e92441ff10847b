package tests

import (
	"testing"

	"github.com/goray/goray/sdk"
)

// Tasks whose argument was stored on a node that has just died wait for
// the object to be rebuilt, instead of failing with "connection refused"
// during the seconds before the node is declared dead.
func TestDependentsOfAKilledNodeWaitForReconstruction(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0"},
		nodeSpec{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"})
	a, b := c.nodes[0], c.nodes[1]
	onA := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))
	onB := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, b.id), true))
	const size = 256 << 10
	blob := MakeBlob.Options(onB).Remote(ctx, size)
	if _, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{blob}, 1, sdk.FetchLocal(false)); err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := 0; i < size; i++ {
		want += int(byte(i*7 + i>>13))
	}
	c.kill(b)
	// Submitted at once, before the GCS can have noticed: their argument's
	// node refuses connections.
	refs := make([]sdk.Ref[int], 40)
	for i := range refs {
		refs[i] = SumBytes.Options(onA).RemoteArgs(ctx, blob)
	}
	for i, r := range refs {
		got, err := r.Get(ctx)
		if err != nil {
			t.Fatalf("task %d on the argument of the killed node: %v", i, err)
		}
		if got != want {
			t.Fatalf("task %d: sum %d, want %d", i, got, want)
		}
	}
}
