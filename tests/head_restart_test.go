package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/sdk"
)

// restartHead SIGKILLs the head, as its machine failing, and starts it
// again on the same session directory and NATS port, as an operator (or a
// supervisor such as systemd) would.
func (c *testCluster) restartHead(headArgs []string) {
	c.t.Helper()
	c.kill(c.head)
	port := c.addr[strings.LastIndex(c.addr, ":")+1:]
	args := append([]string{"start", "--head", "--block", "--port", port, "--node-timeout", nodeTimeout.String(), "--object-store-memory", "512MiB"}, headArgs...)
	c.head = c.spawn("head", args, "goray head node running at ")
	c.head.id = ""
}

// A head killed and started again on the same session: actors on the
// other nodes keep running and answering through the outage, the actors
// that died with the head (detached and named included) are restarted
// with their names, and the connected driver goes on without code of its
// own.
func TestHeadRestart(t *testing.T) {
	headArgs := []string{"--num-cpus", "1"}
	ctx, c := startMultiNode(t, headArgs, nodeSpec{"--num-cpus", "2"})
	onHead := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.head.id), true))
	onNode := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.nodes[0].id), false))
	service, err := CounterActor.Options(onHead, sdk.Name("service"), sdk.Namespace("ft"), sdk.Detached(), sdk.MaxRestarts(-1)).Remote(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	survivor, err := CounterActor.Options(onNode, sdk.Name("survivor"), sdk.Namespace("ft"), sdk.Detached(), sdk.MaxRestarts(-1)).Remote(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CounterInc.Remote(ctx, service, 1).Get(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := CounterInc.Remote(ctx, survivor, 7).Get(ctx); err != nil {
		t.Fatal(err)
	}

	c.kill(c.head)
	// While the head is down, calls to an actor on another node carry on.
	if v, err := CounterInc.Remote(ctx, survivor, 1).Get(ctx); err != nil || v != 8 {
		dumpLogs(t, c.nodes[0].dir)
		t.Fatalf("call to the surviving actor while the head is down = %v, %v; want 8", v, err)
	}
	c.head.killed = false
	c.restartHead(headArgs)
	back := time.Now()

	// The detached service died with the head: it is restarted, found by
	// name, and answers.
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		h, err := sdk.GetActor[Counter](ctx, "service", "ft")
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = CounterGet.Remote(cctx, h).Get(cctx)
		return err
	})
	t.Logf("detached actor answered %v after the head's return", time.Since(back))
	// The survivor kept its state: it was not restarted.
	if v, err := CounterGet.Remote(ctx, survivor).Get(ctx); err != nil || v != 8 {
		t.Fatalf("surviving actor after the head's restart = %v, %v; want 8 (not restarted)", v, err)
	}
	// The connected driver's next tasks succeed.
	for i := 0; i < 10; i++ {
		if v, err := Add.Remote(ctx, i, 1).Get(ctx); err != nil || v != i+1 {
			t.Fatalf("task after the head's restart = %v, %v", v, err)
		}
	}
	t.Logf("driver's tasks run %v after the head's return", time.Since(back))
	_ = service
}

func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "logs", "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		t.Logf("== %s\n%s", f, b)
	}
}

// Placement groups survive a head restart: one reserved before (whose
// bundles may have been on the head) serves tasks after it, and one whose
// reservation the head was making when it died is reserved after it.
func TestHeadRestartPlacementGroups(t *testing.T) {
	headArgs := []string{"--num-cpus", "2"}
	ctx, c := startMultiNode(t, headArgs, nodeSpec{"--num-cpus", "2"})
	ready, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{{"CPU": 1}, {"CPU": 1}}, sdk.PlacementSpread)
	if err != nil {
		t.Fatal(err)
	}
	if err := ready.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	inFlight, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{{"CPU": 1}, {"CPU": 1}}, sdk.PlacementPack)
	if err != nil {
		t.Fatal(err)
	}
	// A control-plane call made while the head is down waits for it.
	c.head.killed = false
	c.kill(c.head)
	got := make(chan error, 1)
	go func() {
		_, err := sdk.ClusterStatus(ctx)
		got <- err
	}()
	c.restartHead(headArgs)
	if err := <-got; err != nil {
		t.Fatalf("ClusterStatus made while the head was down: %v", err)
	}
	for _, pg := range []sdk.PlacementGroup{ready, inFlight} {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := pg.Ready(rctx)
		cancel()
		if err != nil {
			info, ierr := pg.Info(ctx)
			st, _ := sdk.ClusterStatus(ctx)
			t.Fatalf("placement group %s after the head's restart: %v (now %+v, %v; cluster %+v)", pg.ID(), err, info, ierr, st)
		}
		for b := 0; b < 2; b++ {
			if v, err := Add.Options(sdk.InPlacementGroup(pg, b)).Remote(ctx, b, 1).Get(ctx); err != nil || v != b+1 {
				t.Fatalf("task in bundle %d of %s after the head's restart = %v, %v", b, pg.ID(), v, err)
			}
		}
	}
}

// Gets made while the head is down of objects on another node (which the
// driver pulls through its machine's raylet, the head's) wait for the
// restarted head's raylet and return the objects, instead of failing with
// "wire: connection closed" (`make chaos` met it a hundred times a run).
func TestHeadRestartGetOfRemoteObjects(t *testing.T) {
	headArgs := []string{"--num-cpus", "1"}
	ctx, c := startMultiNode(t, headArgs, nodeSpec{"--num-cpus", "2"})
	onNode := sdk.Scheduling(sdk.NodeAffinity(mustNodeID(t, c.nodes[0].id), false))
	const size = 1 << 20
	blobs := make([]sdk.Ref[[]byte], 4)
	for i := range blobs {
		blobs[i] = MakeBlob.Options(onNode).Remote(ctx, size)
	}
	if _, _, err := sdk.Wait(ctx, blobs, len(blobs), sdk.FetchLocal(false)); err != nil {
		t.Fatal(err)
	}
	c.head.killed = false
	c.kill(c.head)
	got := make(chan error, len(blobs))
	for _, r := range blobs {
		go func() {
			b, err := r.Get(ctx)
			last := size - 1
			if err == nil && (len(b) != size || b[last] != byte(last*7+last>>13)) {
				err = errorf("got %d bytes, not MakeBlob's", len(b))
			}
			got <- err
		}()
	}
	c.restartHead(headArgs)
	for range blobs {
		if err := <-got; err != nil {
			t.Fatalf("Get made while the head was down of an object on the other node: %v", err)
		}
	}
}
