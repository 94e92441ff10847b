package gcs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// bundlePlacer is the fake placer with a fake raylet side for bundles: it
// records every call, and prepares fail on the nodes in failPrepare.
type bundlePlacer struct {
	*fakePlacer
	mu          sync.Mutex
	failPrepare map[string]bool // host
	calls       []bundleCall
}

type bundleCall struct {
	op      string // prepare, commit, cancel
	host    string
	indexes []int32
}

func (p *bundlePlacer) record(op string, node *protos.NodeInfo, indexes []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, bundleCall{op: op, host: node.GetHostname(), indexes: indexes})
}

func (p *bundlePlacer) prepareBundles(_ context.Context, node *protos.NodeInfo, req *protos.PrepareBundlesRequest) error {
	var idx []int32
	for _, b := range req.GetBundles() {
		idx = append(idx, b.GetIndex())
	}
	p.record("prepare", node, idx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failPrepare[node.GetHostname()] {
		return wire.NewError("no_resources", "node %s is full", node.GetHostname())
	}
	return nil
}

func (p *bundlePlacer) commitBundles(_ context.Context, node *protos.NodeInfo, _ *protos.CommitBundlesRequest) error {
	p.record("commit", node, nil)
	return nil
}

func (p *bundlePlacer) cancelBundles(_ context.Context, node *protos.NodeInfo, req *protos.CancelBundlesRequest) error {
	p.record("cancel", node, req.GetIndexes())
	return nil
}

func (p *bundlePlacer) take() []bundleCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.calls
	p.calls = nil
	return out
}

func (p *bundlePlacer) setFail(host string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failPrepare[host] = fail
}

func has(calls []bundleCall, op, host string) bool {
	for _, c := range calls {
		if c.op == op && c.host == host {
			return true
		}
	}
	return false
}

// TestPlacementGroupAllOrNothing: a group whose bundles cannot all be
// prepared holds none (the prepared ones are cancelled) and is tried
// again until it can; removing it cancels its bundles everywhere.
func TestPlacementGroupAllOrNothing(t *testing.T) {
	t.Parallel()
	p := &bundlePlacer{fakePlacer: newFakePlacer(), failPrepare: map[string]bool{"n2": true}}
	srv := runServer(t, Options{placer: p, NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	for _, h := range []string{"n1", "n2"} {
		n := newNode(h)
		n.Total = &protos.Resources{Amounts: map[string]float64{"CPU": 2}}
		n.Available = n.Total
		must(t, c.RegisterNode(ctx, n))
	}
	id := protos.NewUniqueID()
	spec := &protos.PlacementGroupSpec{PlacementGroupId: id.Bytes(), JobId: protos.NewUniqueID().Bytes(), Strategy: protos.PlacementStrategy_STRICT_SPREAD,
		Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}, {Amounts: map[string]float64{"CPU": 1}}}}
	info, err := c.CreatePlacementGroup(ctx, spec)
	if err != nil || info.GetState() != protos.PlacementGroupState_PG_PENDING {
		t.Fatalf("create: %v, %v", info, err)
	}
	var seen []bundleCall
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		seen = append(seen, p.take()...)
		if has(seen, "prepare", "n1") && has(seen, "prepare", "n2") && has(seen, "cancel", "n1") {
			return nil
		}
		return errors.New("no failed attempt yet")
	})
	if has(seen, "commit", "n1") || has(seen, "commit", "n2") {
		t.Fatalf("a bundle was committed although a prepare failed: %v", seen)
	}
	// The attempt cancels its prepared bundles before the manager records
	// why it failed: wait for the reason, and the group must stay PENDING
	// all along.
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got, err := c.GetPlacementGroup(ctx, id)
		if err != nil {
			return err
		}
		if got.GetState() != protos.PlacementGroupState_PG_PENDING {
			t.Fatalf("after a failed attempt: %v; want PENDING", got)
		}
		if got.GetPendingReason() == "" {
			return errors.New("no pending reason yet")
		}
		return nil
	})

	p.setFail("n2", false)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got, err := c.GetPlacementGroup(ctx, id)
		if err != nil {
			return err
		}
		if got.GetState() != protos.PlacementGroupState_PG_CREATED {
			return errors.New("not created yet")
		}
		if len(got.GetBundleNodes()) != 2 || string(got.GetBundleNodes()[0]) == string(got.GetBundleNodes()[1]) {
			t.Fatalf("STRICT_SPREAD bundles on %x", got.GetBundleNodes())
		}
		return nil
	})
	calls := p.take()
	if !has(calls, "commit", "n1") || !has(calls, "commit", "n2") {
		t.Fatalf("created without committing on both nodes: %v", calls)
	}

	must(t, c.RemovePlacementGroup(ctx, id))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		calls = append(calls, p.take()...)
		if has(calls, "cancel", "n1") && has(calls, "cancel", "n2") {
			return nil
		}
		return errors.New("not cancelled on both nodes yet")
	})
	if _, err := c.GetPlacementGroup(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after remove: %v; want ErrNotFound", err)
	}
	must(t, c.RemovePlacementGroup(ctx, id)) // twice is fine

	// Invalid bundles and taken names are refused.
	bad := &protos.PlacementGroupSpec{PlacementGroupId: protos.NewUniqueID().Bytes(), Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 0}}}}
	if _, err := c.CreatePlacementGroup(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero amount: %v; want ErrInvalid", err)
	}
}

// TestPlacementGroupsOfFinishedJob: a job's groups are removed when it
// finishes, except detached ones.
func TestPlacementGroupsOfFinishedJob(t *testing.T) {
	t.Parallel()
	p := &bundlePlacer{fakePlacer: newFakePlacer(), failPrepare: map[string]bool{}}
	srv := runServer(t, Options{placer: p, NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	n := newNode("n1")
	n.Total = &protos.Resources{Amounts: map[string]float64{"CPU": 4}}
	n.Available = n.Total
	must(t, c.RegisterNode(ctx, n))
	job := protos.NewUniqueID()
	must(t, c.RegisterJob(ctx, &protos.JobInfo{JobId: job.Bytes(), Executable: "/bin/true"}))
	mk := func(detached bool) protos.UniqueID {
		id := protos.NewUniqueID()
		_, err := c.CreatePlacementGroup(ctx, &protos.PlacementGroupSpec{PlacementGroupId: id.Bytes(), JobId: job.Bytes(), Detached: detached,
			Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}}})
		must(t, err)
		return id
	}
	plain, detached := mk(false), mk(true)
	must(t, c.FinishJob(ctx, job))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if _, err := c.GetPlacementGroup(ctx, plain); !errors.Is(err, ErrNotFound) {
			return errors.New("the job's group is still there")
		}
		return nil
	})
	if _, err := c.GetPlacementGroup(ctx, detached); err != nil {
		t.Errorf("the detached group of the finished job: %v; want it kept", err)
	}
}
