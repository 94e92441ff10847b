package gcs

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/goray/goray/protos"
	"google.golang.org/protobuf/proto"
)

// The GCS publishes node and job events for the rest of the cluster and
// must not act on one it did not decide. These tests publish forged events
// (with the GCS's own credentials, which is what NATS permissions leave as
// the only way), then make a genuine event of the same kind happen: the
// GCS acts on that one, and by then it would have acted on the forgery,
// which was published on the same subject before it.

// publishForged publishes m on subject and waits until the server has it.
func publishForged(t *testing.T, c *Client, subject string, m proto.Message) {
	t.Helper()
	must(t, c.NATS().Publish(subject, marshal(t, m)))
	must(t, c.NATS().Flush())
}

// TestForgedNodeDeathIgnored: a DEAD event for an alive node does not make
// the placement groups on it reschedule.
func TestForgedNodeDeathIgnored(t *testing.T) {
	t.Parallel()
	p := &bundlePlacer{fakePlacer: newFakePlacer(), failPrepare: map[string]bool{}}
	srv := runServer(t, Options{placer: p, NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	for _, h := range []string{"n1", "n2"} {
		n := newNode(h)
		n.Total = &protos.Resources{Amounts: map[string]float64{"CPU": 1}}
		n.Available = n.Total
		must(t, c.RegisterNode(ctx, n))
	}
	// Each group takes a whole node.
	create := func() protos.UniqueID {
		id := protos.NewUniqueID()
		_, err := c.CreatePlacementGroup(ctx, &protos.PlacementGroupSpec{PlacementGroupId: id.Bytes(), JobId: protos.NewUniqueID().Bytes(),
			Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}}})
		must(t, err)
		return id
	}
	created := func(id protos.UniqueID) *protos.PlacementGroupInfo {
		var info *protos.PlacementGroupInfo
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			var err error
			if info, err = c.GetPlacementGroup(ctx, id); err != nil {
				return err
			}
			if info.GetState() != protos.PlacementGroupState_PG_CREATED {
				return fmt.Errorf("group %s is %v", id.Short(), info.GetState())
			}
			return nil
		})
		return info
	}
	target, witness := create(), create()
	targetNode := created(target).GetBundleNodes()[0]
	witnessNode := created(witness).GetBundleNodes()[0]
	if bytes.Equal(targetNode, witnessNode) {
		t.Fatalf("both groups on node %x", targetNode)
	}
	p.take()

	publishForged(t, c, SubjectNodeEvents, &protos.NodeInfo{NodeId: targetNode, State: protos.NodeInfo_DEAD, Hostname: "forged"})
	// A genuine death, announced on the same subject after the forgery.
	must(t, c.UnregisterNode(ctx, protos.MustUniqueID(witnessNode)))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		info, err := c.GetPlacementGroup(ctx, witness)
		if err != nil {
			return err
		}
		if info.GetState() != protos.PlacementGroupState_PG_RESCHEDULING {
			return fmt.Errorf("the dead node's group is %v, want RESCHEDULING", info.GetState())
		}
		return nil
	})

	info, err := c.GetPlacementGroup(ctx, target)
	must(t, err)
	if info.GetState() != protos.PlacementGroupState_PG_CREATED || !bytes.Equal(info.GetBundleNodes()[0], targetNode) {
		t.Errorf("group on the alive node after a forged death: %v on %x", info.GetState(), info.GetBundleNodes())
	}
	nodes, err := c.ListNodes(ctx)
	must(t, err)
	for _, n := range nodes {
		if bytes.Equal(n.GetNodeId(), targetNode) && n.GetState() != protos.NodeInfo_ALIVE {
			t.Errorf("the forged event changed the node table: %v", n)
		}
	}
	for _, call := range p.take() {
		if call.op == "cancel" {
			t.Errorf("bundles cancelled after a forged death: %v", call)
		}
	}
}

// TestForgedJobFinishIgnored: a finished event for a running job does not
// kill its actors nor remove its placement groups.
func TestForgedJobFinishIgnored(t *testing.T) {
	t.Parallel()
	e := newActorEnv(t, Options{})
	e.addNode(t, "n1", 4)
	target, witness := newJob("target"), newJob("witness")
	must(t, e.c.RegisterJob(e.ctx, target))
	must(t, e.c.RegisterJob(e.ctx, witness))
	targetID, witnessID := protos.MustUniqueID(target.GetJobId()), protos.MustUniqueID(witness.GetJobId())
	targetActor := actorSpec(targetID, "Counter", nil)
	targetEvents, _, _, _ := e.startActor(t, targetActor, 41)
	witnessEvents, _, _, _ := e.startActor(t, actorSpec(witnessID, "Counter", nil), 42)
	group := protos.NewUniqueID()
	_, err := e.c.CreatePlacementGroup(e.ctx, &protos.PlacementGroupSpec{PlacementGroupId: group.Bytes(), JobId: target.GetJobId(),
		Bundles: []*protos.Resources{{Amounts: map[string]float64{"CPU": 1}}}})
	must(t, err)

	forged := proto.CloneOf(target)
	forged.Finished = true
	publishForged(t, e.c, SubjectJobEvents, forged)
	// A genuine end, announced on the same subject after the forgery.
	must(t, e.c.FinishJob(e.ctx, witnessID))
	if info := expectState(t, witnessEvents, protos.ActorState_DEAD); info.GetDeathCause() != deathJobFinished {
		t.Fatalf("the finished job's actor: %v", info)
	}

	select {
	case info := <-targetEvents:
		t.Errorf("the running job's actor changed after a forged finish: %v (%s)", info.GetState(), info.GetDeathCause())
	default:
	}
	got, err := e.c.GetActor(e.ctx, protos.MustUniqueID(targetActor.GetActorId()))
	must(t, err)
	if got.GetState() != protos.ActorState_ALIVE {
		t.Errorf("the running job's actor after a forged finish: %v (%s)", got.GetState(), got.GetDeathCause())
	}
	for _, k := range e.p.killRequests() {
		if bytes.Equal(k.GetActorId(), targetActor.GetActorId()) {
			t.Errorf("KILL_ACTOR sent after a forged finish: %v", k)
		}
	}
	if _, err := e.c.GetPlacementGroup(e.ctx, group); err != nil {
		t.Errorf("the running job's group after a forged finish: %v", err)
	}
	// The job still takes new actors.
	if _, err := e.c.RegisterActor(e.ctx, actorSpec(targetID, "Counter", nil)); errors.Is(err, ErrInvalid) {
		t.Errorf("register for the running job after a forged finish: %v", err)
	}
}
