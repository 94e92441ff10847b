package core

import (
	"context"
	"fmt"
	"time"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// A driver joined to a cluster outlives its node's raylet: when the head
// restarts (and with it the raylet of its machine, where drivers run), the
// driver finds the machine's new raylet, registers its job again, maps the
// new object store and carries on. Objects it owned in the old store are
// lost with the old node and rebuilt from their lineage, as for any dead
// node; tasks waiting for a worker wait for the new raylet.

// keepRaylet waits for b's raylet connection to close and, unless this
// process is shutting down, binds it to the machine's next raylet.
func (s *session) keepRaylet(b *nodeBinding) {
	<-b.raylet.Done()
	// Whatever the outcome, those waiting on b (awaitRebind) learn it.
	defer close(b.replaced)
	cw := s.cw
	if cw.closed.Load() {
		return
	}
	cw.log.Warn().Str("node", b.id.Short()).Msg("lost this machine's raylet; waiting for it to come back")
	ctx, cancel := context.WithTimeout(context.Background(), s.rebindTimeout)
	defer cancel()
	t0 := time.Now()
	for {
		nb, err := s.rebind(ctx, b)
		if err == nil {
			cw.log.Warn().Str("old_node", b.id.Short()).Str("node", nb.id.Short()).Dur("after", time.Since(t0)).Msg("reconnected to this machine's raylet")
			go s.keepRaylet(nb)
			// Objects this driver owned in the old node's store are gone
			// with it: rebuild them.
			go cw.nodeDied(b.id)
			return
		}
		select {
		case <-ctx.Done():
			cw.log.Error().Err(err).Dur("after", time.Since(t0)).Msg("no raylet came back on this machine; tasks fail from now on")
			return
		case <-time.After(200 * time.Millisecond):
		}
		if cw.closed.Load() {
			return
		}
	}
}

// rebind connects to the live raylet of this machine other than old's,
// registers the driver with it and publishes the new binding.
func (s *session) rebind(ctx context.Context, old *nodeBinding) (*nodeBinding, error) {
	cw := s.cw
	// Each try is short: a request sent while NATS was reconnecting may
	// never be answered.
	lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	node, err := localNode(lctx, s.gcs)
	cancel()
	if err != nil {
		return nil, err
	}
	id := protos.MustUniqueID(node.GetNodeId())
	if id == old.id {
		return nil, fmt.Errorf("node %s is still recorded alive", id.Short())
	}
	c, err := cw.dial(ctx, node.GetRayletEndpoint())
	if err != nil {
		return nil, fmt.Errorf("connect to raylet at %s: %w", node.GetRayletEndpoint(), err)
	}
	var reply protos.RegisterClientReply
	if err := c.Call(ctx, protos.Method_REGISTER_CLIENT, s.register, &reply); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("register with raylet: %w", err)
	}
	seg, err := objstore.OpenSegment(node.GetStorePath())
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("map object store %s: %w", node.GetStorePath(), err)
	}
	// The old segment stays mapped: values read from it may still be in
	// use (its pages are freed when the process exits).
	nb := &nodeBinding{raylet: c, store: rayletStore{c}, seg: seg, addr: old.addr, replaced: make(chan struct{})}
	nb.setNode(id)
	cw.bind.Store(nb)
	return nb, nil
}

// afterRebind runs retry once b has been replaced by a new binding, or
// giveUp if it was not (this process is closing, or no raylet came back).
// It is how work meant for a raylet whose connection failed waits for the
// next one. Both run on a goroutine of their own: the caller may hold
// locks they take.
func (cw *Worker) afterRebind(b *nodeBinding, retry func(*wire.Conn), giveUp func()) {
	go func() {
		if cw.awaitRebind(context.Background(), b) {
			retry(cw.node().raylet)
			return
		}
		giveUp()
	}()
}

// awaitRebind waits, in a driver whose raylet connection b failed, until b
// is replaced; it reports whether there is a new binding to retry on
// (false in a worker, which dies with its raylet, or when no raylet came
// back or ctx ended first).
func (cw *Worker) awaitRebind(ctx context.Context, b *nodeBinding) bool {
	if !cw.rebinds.Load() || b.raylet == nil {
		return false
	}
	select {
	case <-b.replaced:
	case <-ctx.Done():
		return false
	}
	return cw.node() != b && !cw.closed.Load()
}
