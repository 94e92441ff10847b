package gcs

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/goray/goray/gcs/membership"
	"github.com/goray/goray/protos"
)

// joinMembers puts node's record in the GCS's member table, heart-beating
// until life ends.
func joinMembers(t *testing.T, c *Client, life context.Context, node *protos.NodeInfo) *membership.Membership {
	t.Helper()
	js, err := jetstream.New(c.NATS())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := membership.Open(ctxT(t), js, membership.Options{TTL: membership.MinTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	m, err := reg.Join(life, protos.MustUniqueID(node.GetNodeId()).String(), []byte("record"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestNodeDeadWhenMembershipExpires: a node whose heartbeat stops is
// declared dead when its membership record expires, even while reports
// (a wedged process's last words) keep arriving for a while; a node that
// leaves the table is dead at once.
func TestNodeDeadWhenMembershipExpires(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{NodeTimeout: membership.MinTTL})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	events := subscribeEvents[protos.NodeInfo](t, c.NATS(), SubjectNodeEvents)

	crash, leaver := newNode("crashing"), newNode("leaving")
	for _, n := range []*protos.NodeInfo{crash, leaver} {
		if err := c.RegisterNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		nextEvent(t, events) // ALIVE
	}
	// Reports go on for both, so the report detector never fires: only
	// the membership can tell.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
				_ = c.ReportNode(crash)
				_ = c.ReportNode(leaver)
			}
		}
	}()
	life, stop := context.WithCancel(context.Background())
	joinMembers(t, c, life, crash)
	m := joinMembers(t, c, context.Background(), leaver)
	stop() // the process stops heart-beating, without leaving
	ev := nextEvent(t, events)
	if ev.GetState() != protos.NodeInfo_DEAD || !bytes.Equal(ev.GetNodeId(), crash.GetNodeId()) {
		t.Fatalf("event %v, want DEAD for the crashed node", ev)
	}

	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, events)
	if ev.GetState() != protos.NodeInfo_DEAD || !bytes.Equal(ev.GetNodeId(), leaver.GetNodeId()) {
		t.Fatalf("event %v, want DEAD for the node that left", ev)
	}
}
