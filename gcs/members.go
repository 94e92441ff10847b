package gcs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/goray/goray/gcs/membership"
	"github.com/goray/goray/protos"
)

// Node liveness. Every node keeps a record in the membership bucket
// (package membership: JetStream KV with a TTL), refreshed by a heartbeat
// of its own; the GCS watches the bucket, and a record that expires (the
// node crashed, hung or lost its network) or is deleted (it left) marks the
// node DEAD at once, which the node event then tells every raylet and
// driver. The raylets' reports are the second, slower detector (a node
// whose raylet stopped reporting though its process heart-beats).

// Why a node died, when it left cleanly.
const (
	whyUnregistered = "unregistered"
	whyLeft         = "left the member table"
	// whyReplacedHead is not a clean leave: the head's process died.
	whyReplacedHead = "a new head registered (the head restarted)"
)

// memberGone tells the node manager a node's membership record went.
type memberGone struct {
	id      protos.NodeID
	expired bool
}

// MembershipTTL is the membership TTL for a node timeout: the timeout, but
// not under membership.MinTTL.
func MembershipTTL(nodeTimeout time.Duration) time.Duration {
	return max(nodeTimeout, membership.MinTTL)
}

// watchMembers opens the member table and forwards departures to the node
// manager until ctx ends.
func (s *Server) watchMembers(ctx context.Context, js jetstream.JetStream) error {
	opts := membership.Options{TTL: MembershipTTL(s.opts.NodeTimeout), Replicas: s.opts.Replicas, Logger: s.log}
	reg, err := membership.Open(ctx, js, opts)
	if errors.Is(err, membership.ErrBucketMismatch) {
		// Left by a GCS run with another node timeout: start it over;
		// live members re-create their records on their next refresh.
		s.log.Warn().Err(err).Msg("recreating the membership bucket")
		if derr := js.DeleteKeyValue(ctx, membership.DefaultBucket); derr != nil {
			return fmt.Errorf("%w: membership: %w", ErrUnavailable, derr)
		}
		reg, err = membership.Open(ctx, js, opts)
	}
	if err != nil {
		return fmt.Errorf("%w: membership: %w", ErrUnavailable, err)
	}
	events, err := reg.Watch(ctx)
	if err != nil {
		_ = reg.Close()
		return fmt.Errorf("%w: membership: %w", ErrUnavailable, err)
	}
	s.members = reg
	go func() {
		for ev := range events {
			if ev.Kind != membership.Left && ev.Kind != membership.Expired {
				continue
			}
			id, err := protos.UniqueIDFromHex(ev.ID)
			if err != nil {
				continue
			}
			s.system.Root.Send(s.managers.nodes, memberGone{id: id, expired: ev.Kind == membership.Expired})
		}
	}()
	return nil
}

func (m *nodeManager) memberGone(msg memberGone) {
	n, ok := m.nodes[msg.id]
	if m.loadErr != nil || !ok || n.info.GetState() != protos.NodeInfo_ALIVE {
		return
	}
	why := whyLeft
	if msg.expired {
		why = "its membership record expired (no heartbeat for the node timeout)"
	}
	if e := m.markDead(msg.id, n, why); e != nil {
		m.env.log.Error().Str("node", msg.id.Short()).Str("error", e.GetMessage()).Msg("mark node dead")
	}
}
