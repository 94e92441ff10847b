package tests

import (
	"testing"

	"github.com/goray/goray/sdk"
)

// Processes of one node that need the same object of another node at the
// same moment share its pull: each reads the object once it has arrived,
// none is told it is lost while it is still arriving. (A pull that found the
// object's partial copy in the store answered at once, and the reader found
// no sealed object: "object lost: ... is not in the node's store"; `make
// chaos` met it dozens of times a minute with 150 KiB objects.)
func TestConcurrentPullsOfOneObject(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0"},
		nodeSpec{"--num-cpus", "1"}, nodeSpec{"--num-cpus", "4"})
	onA := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.nodes[0].id), false))
	onB := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.nodes[1].id), false))
	// Large, so that the pull takes long enough for the other readers to
	// ask for the object while it is under way.
	const size = 64 << 20
	want := 0
	for i := 0; i < size; i++ {
		want += int(byte(i*7 + i>>13))
	}
	// Warm B's workers up, so that the readers start together.
	warm := make([]sdk.Ref[int], 8)
	for i := range warm {
		warm[i] = Add.Options(onB).Remote(ctx, i, 1)
	}
	if _, err := sdk.GetAll(ctx, warm); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		blob := MakeBlob.Options(onA).Remote(ctx, size)
		if _, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{blob}, 1, sdk.FetchLocal(false)); err != nil {
			t.Fatal(err)
		}
		refs := make([]sdk.Ref[int], 8)
		for i := range refs {
			refs[i] = SumBytes.Options(onB).RemoteArgs(ctx, blob)
		}
		for i, r := range refs {
			got, err := r.Get(ctx)
			if err != nil {
				t.Fatalf("round %d, reader %d of the object on the other node: %v", round, i, err)
			}
			if got != want {
				t.Fatalf("round %d, reader %d: sum %d, want %d", round, i, got, want)
			}
		}
	}
}
