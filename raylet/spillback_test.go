package raylet

import (
	"context"
	"errors"
	"maps"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// peerInfo is another node as its reports describe it.
func peerInfo(id protos.NodeID, cpus float64, labels map[string]string) *protos.NodeInfo {
	amounts := map[string]float64{CPU: cpus}
	// Every node carries its platform, as raylets report it.
	labels = maps.Clone(labels)
	if labels == nil {
		labels = map[string]string{}
	}
	if _, ok := labels[PlatformLabel]; !ok {
		labels[PlatformLabel] = runtime.GOOS + "/" + runtime.GOARCH
	}
	return &protos.NodeInfo{NodeId: id.Bytes(), RayletTcpEndpoint: "tcp:127.0.0.1:1", State: protos.NodeInfo_ALIVE, Labels: labels,
		Total: &protos.Resources{Amounts: amounts}, Available: &protos.Resources{Amounts: amounts}}
}

// TestSpillback: a raylet grants locally what its policy keeps, answers a
// spillback naming the peer for what belongs elsewhere, fails hard affinity
// to an unknown node, and queues what no node can ever hold until a node
// that can joins its view.
func TestSpillback(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := startRaylet(t, 1, 2)
	c := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job := protos.NewUniqueID()
	if err := c.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}); err != nil {
		t.Fatal(err)
	}
	peer := protos.NewUniqueID()
	r.UpdatePeer(peerInfo(peer, 8, map[string]string{"zone": "b"}))
	ask := func(demand map[string]float64, st *protos.SchedulingStrategy) (*protos.RequestWorkerLeaseReply, error) {
		rep := &protos.RequestWorkerLeaseReply{}
		err := c.Call(ctx, protos.Method_REQUEST_WORKER_LEASE, &protos.RequestWorkerLeaseRequest{
			JobId: job.Bytes(), Function: "f", Resources: &protos.Resources{Amounts: demand}, Strategy: st}, rep)
		return rep, err
	}
	spilledTo := func(rep *protos.RequestWorkerLeaseReply, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if rep.GetRetryAt() == nil {
			return "here"
		}
		return protos.MustUniqueID(rep.GetRetryAt().GetNodeId()).String()
	}
	// Idle local node: kept (granted here).
	if got := spilledTo(ask(map[string]float64{CPU: 1}, nil)); got != "here" {
		t.Errorf("first task went to %s; want it kept", got)
	}
	// Two CPUs never fit here: the peer.
	if got := spilledTo(ask(map[string]float64{CPU: 2}, nil)); got != peer.String() {
		t.Errorf("a 2-CPU task went to %s; want the 8-CPU peer", got)
	}
	// Labels only the peer has.
	if got := spilledTo(ask(map[string]float64{CPU: 0.5}, &protos.SchedulingStrategy{Labels: map[string]*protos.LabelValues{"zone": {Values: []string{"b"}}}})); got != peer.String() {
		t.Errorf("zone=b went to %s; want the peer", got)
	}
	// Hard affinity to a node nobody knows.
	_, err = ask(map[string]float64{CPU: 1}, &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY, NodeId: protos.NewUniqueID().Bytes()})
	var re *wire.RemoteError
	if !errors.As(err, &re) || re.Code != "unschedulable" {
		t.Errorf("hard affinity to an unknown node: %v; want unschedulable", err)
	}
	// Infeasible anywhere: it waits, reported, until a node that fits joins.
	done := make(chan string, 1)
	go func() {
		rep, err := ask(map[string]float64{"TPU": 1}, nil)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- protos.MustUniqueID(rep.GetRetryAt().GetNodeId()).String()
	}()
	waitFor(t, "the TPU demand reported infeasible", func() bool { return len(r.NodeInfo().GetInfeasible()) == 1 })
	tpu := protos.NewUniqueID()
	info := peerInfo(tpu, 1, nil)
	info.Total.Amounts["TPU"], info.Available.Amounts["TPU"] = 1, 1
	r.UpdatePeer(info)
	select {
	case got := <-done:
		if got != tpu.String() {
			t.Errorf("the TPU task went to %s; want the node that joined, %s", got, tpu)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the TPU task stayed queued after a node with a TPU joined")
	}
	// A dead peer leaves the view: affinity to it fails.
	r.RemovePeer(peer)
	waitFor(t, "the peer to leave the view", func() bool {
		_, err := ask(map[string]float64{CPU: 1}, &protos.SchedulingStrategy{Kind: protos.SchedulingStrategy_NODE_AFFINITY, NodeId: peer.Bytes()})
		return err != nil && strings.Contains(err.Error(), "unschedulable")
	})
}

// TestBundlesReservation: prepare is all or none, commit turns bundles
// into group resources, cancel gives everything back, and a cancel of some
// bundles leaves the others.
func TestBundlesReservation(t *testing.T) {
	r := startRaylet(t, 4, 1)
	c := dialRaylet(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	group := protos.NewUniqueID()
	one := &protos.Resources{Amounts: map[string]float64{CPU: 1}}
	prepare := func(idx ...int32) error {
		req := &protos.PrepareBundlesRequest{PlacementGroupId: group.Bytes()}
		for _, i := range idx {
			req.Bundles = append(req.Bundles, &protos.BundleReservation{Index: i, Resources: one})
		}
		return c.Call(ctx, protos.Method_PREPARE_BUNDLES, req, &protos.PrepareBundlesReply{})
	}
	amounts := func() map[string]float64 { return r.NodeInfo().GetAvailable().GetAmounts() }
	if err := prepare(0, 1, 2, 3, 4); err == nil {
		t.Fatal("five 1-CPU bundles prepared on a 4-CPU node")
	}
	if got := amounts()[CPU]; got != 4 {
		t.Fatalf("a failed prepare left %v CPUs; want 4 (nothing reserved)", got)
	}
	if err := prepare(0, 1); err != nil {
		t.Fatal(err)
	}
	if got := amounts()[CPU]; got != 2 {
		t.Fatalf("%v CPUs after preparing two bundles; want 2", got)
	}
	if err := c.Call(ctx, protos.Method_COMMIT_BUNDLES, &protos.CommitBundlesRequest{PlacementGroupId: group.Bytes()}, &protos.CommitBundlesReply{}); err != nil {
		t.Fatal(err)
	}
	a := amounts()
	if a[BundleResource(CPU, 0, group)] != 1 || a[BundleResource(CPU, 1, group)] != 1 || a[GroupResource(CPU, group)] != 2 {
		t.Fatalf("after commit: %v; want CPU_group_0/1 of 1 and CPU_group of 2", a)
	}
	// A bundle placed again later joins the group here.
	if err := prepare(2); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, protos.Method_COMMIT_BUNDLES, &protos.CommitBundlesRequest{PlacementGroupId: group.Bytes()}, &protos.CommitBundlesReply{}); err != nil {
		t.Fatal(err)
	}
	if a := amounts(); a[GroupResource(CPU, group)] != 3 || a[CPU] != 1 {
		t.Fatalf("after a third bundle: %v; want CPU_group 3 and 1 CPU free", a)
	}
	if err := c.Call(ctx, protos.Method_CANCEL_BUNDLES, &protos.CancelBundlesRequest{PlacementGroupId: group.Bytes(), Indexes: []int32{1}}, &protos.CancelBundlesReply{}); err != nil {
		t.Fatal(err)
	}
	if a := amounts(); a[GroupResource(CPU, group)] != 2 || a[BundleResource(CPU, 1, group)] != 0 || a[CPU] != 2 {
		t.Fatalf("after cancelling bundle 1: %v; want CPU_group 2, no bundle 1, 2 CPUs free", a)
	}
	if err := c.Call(ctx, protos.Method_CANCEL_BUNDLES, &protos.CancelBundlesRequest{PlacementGroupId: group.Bytes()}, &protos.CancelBundlesReply{}); err != nil {
		t.Fatal(err)
	}
	for k := range r.NodeInfo().GetTotal().GetAmounts() {
		if strings.Contains(k, group.String()) {
			t.Errorf("resource %s left after the group was cancelled", k)
		}
	}
	if got := amounts()[CPU]; got != 4 {
		t.Errorf("%v CPUs after cancelling the group; want 4", got)
	}
}
