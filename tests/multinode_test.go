package tests

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// Multi-node end-to-end tests: every cluster is a head and worker nodes as
// separate `goray start` processes, with this test as the driver on the
// head.

// TestMultiNodeSpread: tasks and actors placed with SPREAD land evenly on
// two 8-CPU nodes (the head has no CPU, so nothing runs there).
func TestMultiNodeSpread(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0"},
		nodeSpec{"--num-cpus", "8"}, nodeSpec{"--num-cpus", "8"})
	a, b := c.nodes[0].id, c.nodes[1].id

	var actors []sdk.Actor[Locator]
	for i := 0; i < 8; i++ {
		h, err := LocatorActor.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx)
		if err != nil {
			t.Fatalf("actor %d: %v", i, err)
		}
		actors = append(actors, h)
	}
	count := map[string]int{}
	for i, h := range actors {
		node, err := LocatorNode.Remote(ctx, h).Get(ctx)
		if err != nil {
			t.Fatalf("actor %d: %v", i, err)
		}
		count[node]++
	}
	if count[a] != 4 || count[b] != 4 {
		t.Errorf("8 SPREAD actors landed %v; want 4 on %s and 4 on %s", count, a[:8], b[:8])
	}

	var refs []sdk.Ref[string]
	for i := 0; i < 8; i++ {
		refs = append(refs, SleepThenNode.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx, 200))
	}
	tasks := map[string]int{}
	for _, r := range refs {
		node, err := r.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tasks[node]++
	}
	if tasks[a] == 0 || tasks[b] == 0 || tasks[c.head.id] != 0 {
		t.Errorf("8 SPREAD tasks ran %v; want some on each worker node and none on the head", tasks)
	}

	// DEFAULT tasks have nowhere to run on the head: they spill back.
	node, err := NodeOf.Remote(ctx).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if node != a && node != b {
		t.Errorf("a task ran on %s; want a worker node", node)
	}
}

// TestMultiNodeAffinityLabelsAndResources: hard and soft node affinity,
// label selectors and custom resources pick the right node; affinity to a
// dead node fails (hard) or falls back (soft).
func TestMultiNodeAffinityLabelsAndResources(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"},
		nodeSpec{"--num-cpus", "2", "--labels", "zone=a"},
		nodeSpec{"--num-cpus", "2", "--labels", "zone=b", "--resources", `{"db": 1}`})
	a, b := c.nodes[0], c.nodes[1]

	for _, target := range []*mnNode{c.head, a, b} {
		got, err := NodeOf.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, target.id), false))).Remote(ctx).Get(ctx)
		if err != nil || got != target.id {
			t.Errorf("hard affinity to %s ran on %s, %v", target.id[:8], got, err)
		}
	}
	got, err := NodeOf.Options(sdk.Scheduling(sdk.Labels(map[string][]string{"zone": {"b"}}))).Remote(ctx).Get(ctx)
	if err != nil || got != b.id {
		t.Errorf("label zone=b ran on %s, %v; want %s", got, err, b.id[:8])
	}
	got, err = NodeOf.Options(sdk.Resources(map[string]float64{"db": 1})).Remote(ctx).Get(ctx)
	if err != nil || got != b.id {
		t.Errorf("custom resource db ran on %s, %v; want %s", got, err, b.id[:8])
	}
	h, err := LocatorActor.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := LocatorNode.Remote(ctx, h).Get(ctx); err != nil || got != a.id {
		t.Errorf("actor with affinity to %s placed on %s, %v", a.id[:8], got, err)
	}

	// No node has the label: infeasible until one joins; the shape shows
	// in the cluster status meanwhile.
	waiting := NodeOf.Options(sdk.Scheduling(sdk.Labels(map[string][]string{"zone": {"c"}}))).Remote(ctx)
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st, err := sdk.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			for _, d := range n.Infeasible {
				if vs := d.Labels["zone"]; len(vs) == 1 && vs[0] == "c" {
					return nil
				}
			}
		}
		return errorf("no node reports the infeasible demand with its label selector")
	})
	joined := c.addNode(nodeSpec{"--num-cpus", "1", "--labels", "zone=c"})
	if got, err := waiting.Get(ctx); err != nil || got != joined.id {
		t.Errorf("the task waiting for zone=c ran on %s, %v; want the node that joined, %s", got, err, joined.id[:8])
	}

	c.kill(a)
	waitNodeGone(t, ctx, a.id)
	waitSegmentGone(t, a)
	_, err = NodeOf.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx).Get(ctx)
	if !errors.Is(err, sdk.ErrUnschedulable) {
		t.Errorf("hard affinity to a dead node: %v; want ErrUnschedulable", err)
	}
	got, err = NodeOf.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), true))).Remote(ctx).Get(ctx)
	if err != nil || got == a.id {
		t.Errorf("soft affinity to a dead node ran on %s, %v; want another node", got, err)
	}
	dead, err := LocatorActor.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx)
	if err == nil {
		_, err = LocatorNode.Remote(ctx, dead).Get(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "unschedulable") {
		t.Errorf("actor with hard affinity to a dead node: %v; want it to die unschedulable", err)
	}
}

// TestMultiNodeObjectTransfer: a 200 MB object made on one node is read on
// another (the task's argument) and by the driver on the head.
func TestMultiNodeObjectTransfer(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "1"},
		nodeSpec{"--num-cpus", "1"}, nodeSpec{"--num-cpus", "1"})
	a, b := c.nodes[0], c.nodes[1]
	const size = 200 << 20
	blob := MakeBlob.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx, size)
	got, err := BlobCheck.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, b.id), false))).RemoteArgs(ctx, blob).Get(ctx)
	if err != nil || got != b.id {
		t.Fatalf("checking the blob on %s: ran on %s, %v", b.id[:8], got, err)
	}
	// With no strategy, a task reading the blob runs where the blob is
	// (locality), not on the driver's node.
	if got, err := BlobCheck.RemoteArgs(ctx, blob).Get(ctx); err != nil || got != a.id {
		t.Errorf("a task reading the blob ran on %s, %v; want the node holding it, %s", got, err, a.id[:8])
	}
	// Wait fetches it to the driver's node (the head) before saying it is
	// ready; with FetchLocal(false) it only needs to exist somewhere.
	other := MakeBlob.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx, 1<<20)
	if ready, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{other}, 1, sdk.FetchLocal(false)); err != nil || len(ready) != 1 {
		t.Fatalf("Wait(FetchLocal(false)): %v, %v", ready, err)
	}
	if where := copiesOf(t, ctx, other.ID().String()); where[c.head.id] {
		t.Errorf("Wait with FetchLocal(false) copied the object to the head: %v", where)
	}
	if ready, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{blob}, 1); err != nil || len(ready) != 1 {
		t.Fatalf("Wait: %v, %v", ready, err)
	}
	if where := copiesOf(t, ctx, blob.ID().String()); !where[a.id] || !where[b.id] || !where[c.head.id] {
		t.Errorf("after Wait, copies of the blob are on %v; want the producer %s, the consumer %s and the driver's node %s",
			where, a.id[:8], b.id[:8], c.head.id[:8])
	}
	data, err := blob.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != size {
		t.Fatalf("driver got %d bytes, want %d", len(data), size)
	}
	for i := 0; i < size; i += 4093 {
		if data[i] != byte(i*7+i>>13) {
			t.Fatalf("driver's copy: byte %d is %d, want %d", i, data[i], byte(i*7+i>>13))
		}
	}
	// Freeing the object frees every copy.
	id := blob.ID()
	data, blob = nil, sdk.Ref[[]byte]{}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		runtime.GC()
		if where := copiesOf(t, ctx, id.String()); len(where) > 0 {
			return errorf("copies left on %v after the object was freed", where)
		}
		return nil
	})

	// An owner on one node, its object on another: when the owner's
	// process exits, the object goes.
	keeper, err := BlobKeeperActor.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hexID, err := BlobKeeperMake.Remote(ctx, keeper, b.id).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if where := copiesOf(t, ctx, hexID); !where[b.id] {
		t.Fatalf("the keeper's blob is on %v; want %s", where, b.id[:8])
	}
	if err := sdk.Kill(ctx, keeper, true); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if where := copiesOf(t, ctx, hexID); len(where) > 0 {
			return errorf("the blob of an owner that exited is still on %v", where)
		}
		return nil
	})
}

// copiesOf says which nodes' stores hold a copy of the object whose id
// (hex) is id.
func copiesOf(t *testing.T, ctx context.Context, id string) map[string]bool {
	t.Helper()
	mem, err := sdk.MemorySummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, o := range mem.Objects {
		if o.ID != id {
			continue
		}
		for _, l := range o.Locations {
			out[l.NodeID] = true
		}
	}
	return out
}

// TestMultiNodeFailover: a node killed with SIGKILL mid-workload has its
// tasks retried on the others; the GCS declares it dead.
func TestMultiNodeFailover(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0"},
		nodeSpec{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"})
	a, b := c.nodes[0], c.nodes[1]
	// Made on b, then lost with it: rebuilt by re-running its task.
	onB := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, b.id), true))
	blob := MakeBlob.Options(onB).Remote(ctx, 1<<20)
	if _, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{blob}, 1, sdk.FetchLocal(false)); err != nil {
		t.Fatal(err)
	}
	if where := copiesOf(t, ctx, blob.ID().String()); !where[b.id] || len(where) != 1 {
		t.Fatalf("blob on %v; want only %s", where, b.id[:8])
	}
	// A chain on b: derived from an argument the driver no longer holds
	// (the lineage keeps it); both are rebuilt, the argument first.
	first := MakeBlob.Options(onB).Remote(ctx, 1<<20)
	derived := Rewrap.Options(onB).RemoteArgs(ctx, first)
	if _, _, err := sdk.Wait(ctx, []sdk.Ref[[]byte]{derived}, 1, sdk.FetchLocal(false)); err != nil {
		t.Fatal(err)
	}
	firstID := first.ID()
	first = sdk.Ref[[]byte]{}
	runtime.GC()
	if where := copiesOf(t, ctx, firstID.String()); !where[b.id] {
		t.Fatalf("the argument of a live result is gone (on %v); its lineage should keep it", where)
	}
	// A worker (an actor on a) owning a blob on b: it rebuilds it too.
	keeper, err := BlobKeeperActor.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, a.id), false))).Remote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BlobKeeperMake.Remote(ctx, keeper, b.id).Get(ctx); err != nil {
		t.Fatal(err)
	}
	// An actor on b with a restart left restarts on a.
	actor, err := LocatorActor.Options(sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, b.id), true)), sdk.MaxRestarts(1)).Remote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := LocatorNode.Remote(ctx, actor).Get(ctx); err != nil || got != b.id {
		t.Fatalf("actor placed on %s, %v; want %s", got, err, b.id[:8])
	}
	var refs []sdk.Ref[string]
	for i := 0; i < 8; i++ {
		refs = append(refs, SleepThenNode.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx, 1500))
	}
	// Wait until tasks run on b, then kill it.
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if len(workerPIDs(b.dir)) == 0 {
			return errorf("no worker on %s yet", b.id[:8])
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // let the tasks start running there
	c.kill(b)
	count := map[string]int{}
	for i, r := range refs {
		node, err := r.Get(ctx)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		count[node]++
	}
	// A task takes 1.5 s and b died within 0.3 s of starting its first
	// worker: none finished there, every one (those b was running among
	// them) finished on a.
	if count[a.id] != 8 {
		t.Errorf("tasks ran %v; want all 8 on %s", count, a.id[:8])
	}
	waitNodeGone(t, ctx, b.id)
	data, err := blob.Get(ctx)
	if err != nil || len(data) != 1<<20 {
		t.Fatalf("the blob lost with its node: %d bytes, %v; want it rebuilt", len(data), err)
	}
	for i := range data {
		if data[i] != byte(i*7+i>>13) {
			t.Fatalf("rebuilt blob: byte %d is %d", i, data[i])
		}
	}
	if where := copiesOf(t, ctx, blob.ID().String()); where[b.id] || len(where) == 0 {
		t.Errorf("rebuilt blob on %v; want a live node", where)
	}
	if d, err := derived.Get(ctx); err != nil || len(d) != 1<<20 {
		t.Errorf("a result whose argument was lost with it: %d bytes, %v; want both rebuilt", len(d), err)
	}
	if n, err := BlobKeeperCheck.Remote(ctx, keeper).Get(ctx); err != nil || n != 1<<20 {
		t.Errorf("the worker-owned blob lost with its node: %d bytes, %v; want it rebuilt", n, err)
	}
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		got, err := LocatorNode.Remote(ctx, actor).Get(ctx)
		if err != nil || got != a.id {
			return errorf("actor after its node died: on %s, %v; want restarted on %s", got, err, a.id[:8])
		}
		return nil
	})
	// The cluster goes on: new work runs on the survivor.
	if got, err := NodeOf.Remote(ctx).Get(ctx); err != nil || got != a.id {
		t.Errorf("after the failure a task ran on %s, %v; want %s", got, err, a.id[:8])
	}
}

// TestMultiNodeExternalNATS: the head uses an existing NATS server instead
// of embedding one, and a node joins through it.
func TestMultiNodeExternalNATS(t *testing.T) {
	url := startNATS(t)
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0", "--nats", url}, nodeSpec{"--num-cpus", "1"})
	if c.addr != url {
		t.Errorf("the head serves at %s; want the external NATS %s", c.addr, url)
	}
	if got, err := NodeOf.Remote(ctx).Get(ctx); err != nil || got != c.nodes[0].id {
		t.Errorf("task ran on %s, %v; want %s", got, err, c.nodes[0].id[:8])
	}
}

// TestMultiNodePlacementGroups: bundles are reserved all or none by each
// strategy, tasks and actors run in their bundle, and removing a group
// frees it and kills what runs in it.
func TestMultiNodePlacementGroups(t *testing.T) {
	ctx, _ := startMultiNode(t, []string{"--num-cpus", "1"},
		nodeSpec{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"})
	one := map[string]float64{"CPU": 1}

	// Invalid bundles are refused at once.
	for _, bad := range [][]map[string]float64{nil, {{}}, {{"CPU": 0}}, {{"CPU": -1}}, {one, {"": 1}}} {
		if _, err := sdk.CreatePlacementGroup(ctx, bad, sdk.PlacementPack); !errors.Is(err, sdk.ErrArgument) {
			t.Errorf("bundles %v: %v; want ErrArgument", bad, err)
		}
	}

	// STRICT_SPREAD: three bundles on three distinct nodes.
	spread, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{one, one, one}, sdk.PlacementStrictSpread, sdk.PGName("spread"))
	if err != nil {
		t.Fatal(err)
	}
	if err := spread.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := spread.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range info.BundleNodes {
		seen[n.String()] = true
	}
	if len(seen) != 3 {
		t.Errorf("STRICT_SPREAD bundles on %d distinct nodes; want 3", len(seen))
	}
	if got, err := sdk.GetPlacementGroup(ctx, "spread", ""); err != nil || got.ID() != spread.ID() {
		t.Errorf("GetPlacementGroup(spread) = %v, %v; want %v", got.ID(), err, spread.ID())
	}
	if _, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{one}, sdk.PlacementPack, sdk.PGName("spread")); err == nil {
		t.Errorf("a second group named spread was created")
	}
	// Each bundle's task runs on that bundle's node.
	for i, n := range info.BundleNodes {
		want := n.String()
		got, err := NodeOf.Options(sdk.InPlacementGroup(spread, i)).Remote(ctx).Get(ctx)
		if err != nil || got != want {
			t.Errorf("task in bundle %d ran on %s, %v; want %s", i, got, err, want[:8])
		}
	}

	// A task in a bundle holds the bundle's resources, by Ray's names.
	res, err := Assigned.Options(sdk.InPlacementGroup(spread, 0)).Remote(ctx).Get(ctx)
	if want := "CPU_group_0_" + spread.ID().String(); err != nil || res[want] != 1 || res["CPU"] != 0 {
		t.Errorf("resources of a task in bundle 0: %v, %v; want %s: 1 and no plain CPU", res, err, want)
	}

	// Every node now has one CPU less: two more CPUs on one node do not
	// exist, so STRICT_PACK waits, holding nothing anywhere meanwhile.
	pack, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{one, one}, sdk.PlacementStrictPack)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := pack.Wait(ctx, 500*time.Millisecond); ok || err != nil {
		t.Fatalf("STRICT_PACK of 2 CPUs ready=%v, %v with one CPU free per node; want it pending", ok, err)
	}
	if free := freeCPUs(t, ctx); free != 2 {
		t.Errorf("%v CPUs free with a pending group; want 2 (nothing reserved)", free)
	}

	// An actor in a bundle; removing the group kills it and frees the
	// bundles, and the pending STRICT_PACK group fits then.
	loc, err := LocatorActor.Options(sdk.InPlacementGroup(spread, 1)).Remote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := LocatorNode.Remote(ctx, loc).Get(ctx); err != nil || got != info.BundleNodes[1].String() {
		t.Errorf("actor in bundle 1 placed on %s, %v", got, err)
	}
	long := SleepThenNode.Options(sdk.InPlacementGroup(spread, 2)).Remote(ctx, 60_000)
	time.Sleep(200 * time.Millisecond)
	if err := sdk.RemovePlacementGroup(ctx, spread); err != nil {
		t.Fatal(err)
	}
	if _, err := long.Get(ctx); err == nil || !strings.Contains(err.Error(), "placement group") {
		t.Errorf("task in a removed group: %v; want it to fail naming its placement group", err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := LocatorNode.Remote(ctx, loc).Get(ctx)
		if err == nil {
			return errorf("the actor in the removed group still answers")
		}
		if !strings.Contains(err.Error(), "placement group") {
			return errorf("actor error %v does not name its placement group", err)
		}
		return nil
	})
	if err := pack.Ready(ctx); err != nil {
		t.Fatalf("STRICT_PACK after the removal: %v", err)
	}
	pinfo, err := pack.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := pinfo.BundleNodes; len(n) != 2 || n[0] != n[1] {
		t.Errorf("STRICT_PACK bundles on %v; want one node", n)
	}
	if err := pack.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sdk.RemovePlacementGroup(ctx, pack); err != nil {
		t.Fatal(err)
	}
	if err := pack.Ready(ctx); !errors.Is(err, sdk.ErrPlacementGroupRemoved) {
		t.Errorf("Ready of a removed group: %v; want ErrPlacementGroupRemoved", err)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if free := freeCPUs(t, ctx); free != 5 {
			return errorf("%v CPUs free after removing every group; want 5", free)
		}
		return nil
	})

	// PACK, then SPREAD, where they can be met: PACK fills a 2-CPU
	// node, leaving two nodes with a CPU free for SPREAD.
	pk, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{one, one}, sdk.PlacementPack)
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	sp, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{one, one}, sdk.PlacementSpread)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	si, _ := sp.Info(ctx)
	pi, _ := pk.Info(ctx)
	if n := si.BundleNodes; n[0] == n[1] {
		t.Errorf("SPREAD put both bundles on one node with room elsewhere")
	}
	if n := pi.BundleNodes; n[0] != n[1] {
		t.Errorf("PACK split two bundles with a node that holds both")
	}
}

// freeCPUs sums the available CPUs the alive nodes report.
func freeCPUs(t *testing.T, ctx context.Context) float64 {
	t.Helper()
	st, err := sdk.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, n := range st.Nodes {
		if n.Alive {
			sum += n.Available["CPU"]
		}
	}
	return sum
}

// TestMultiNodePlacementGroupNodeDies: the bundles of a node that dies are
// reserved again elsewhere, while the group's other bundles, and what runs
// on them, carry on.
func TestMultiNodePlacementGroupNodeDies(t *testing.T) {
	ctx, c := startMultiNode(t, []string{"--num-cpus", "0"},
		nodeSpec{"--num-cpus", "2"}, nodeSpec{"--num-cpus", "2"})
	a, b := c.nodes[0], c.nodes[1]
	one := map[string]float64{"CPU": 1}
	pg, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{one, one}, sdk.PlacementSpread)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := pg.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	onA, onB := -1, -1
	for i, n := range info.BundleNodes {
		switch n.String() {
		case a.id:
			onA = i
		case b.id:
			onB = i
		}
	}
	if onA < 0 || onB < 0 {
		t.Fatalf("SPREAD bundles on %v; want one on each worker node", info.BundleNodes)
	}
	running := SleepThenNode.Options(sdk.InPlacementGroup(pg, onA), sdk.MaxRetries(0)).Remote(ctx, 3000)
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if len(workerPIDs(a.dir)) == 0 {
			return errorf("no worker on %s yet", a.id[:8])
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the task starts in it
	c.kill(b)
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		info, err := pg.Info(ctx)
		if err != nil {
			return err
		}
		if info.State != "CREATED" || info.BundleNodes[onB].String() != a.id {
			return errorf("group %v, bundles on %v (%s); want CREATED with bundle %d on %s", info.State, info.BundleNodes, info.PendingReason, onB, a.id[:8])
		}
		return nil
	})
	if got, err := running.Get(ctx); err != nil || got != a.id {
		t.Errorf("the task in the surviving bundle: %s, %v; want it to finish on %s", got, err, a.id[:8])
	}
	if got, err := NodeOf.Options(sdk.InPlacementGroup(pg, onB)).Remote(ctx).Get(ctx); err != nil || got != a.id {
		t.Errorf("a task in the rescheduled bundle ran on %s, %v; want %s", got, err, a.id[:8])
	}
}
