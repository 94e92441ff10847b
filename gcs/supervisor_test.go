package gcs

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go/jetstream"
)

// TestManagerRestartReloads restarts manager actors the way their
// supervisor does after a panic, and expects them to come back with their
// state reloaded from the buckets and still serving.
func TestManagerRestartReloads(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	n := newNode("n")
	must(t, c.RegisterNode(ctx, n))
	_, err := c.KVPut(ctx, "ns", "k", []byte("v"), false)
	must(t, err)
	// Written behind the KV manager's back: only a reload can see it.
	js, err := jetstream.New(c.NATS())
	must(t, err)
	bucket, err := js.KeyValue(ctx, BucketKV)
	must(t, err)
	_, err = bucket.Put(ctx, kvKey("ns", "direct"), []byte("d"))
	must(t, err)
	if _, ok, _ := c.KVGet(ctx, "ns", "direct"); ok {
		t.Fatal("KV manager sees a bucket write without reloading")
	}

	for _, pid := range []*actor.PID{srv.managers.kv, srv.managers.nodes} {
		proc, ok := srv.system.ProcessRegistry.Get(pid)
		if !ok {
			t.Fatalf("no process for %s", pid.Id)
		}
		proc.SendSystemMessage(pid, &actor.Restart{})
	}

	for key, want := range map[string]string{"k": "v", "direct": "d"} {
		if v, ok, err := c.KVGet(ctx, "ns", key); err != nil || !ok || string(v) != want {
			t.Errorf("KV %q after restart: %q %v %v", key, v, ok, err)
		}
	}
	nodes, err := c.ListNodes(ctx)
	must(t, err)
	if stateOf(nodes, n) != protos.NodeInfo_ALIVE {
		t.Errorf("nodes after restart: %v", nodes)
	}
	// The restarted node manager still serves writes.
	must(t, c.UnregisterNode(ctx, protos.MustUniqueID(n.GetNodeId())))
}
