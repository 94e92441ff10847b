package sdk

import (
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/protos"
)

// Strategy says where a task or actor may run (Ray's scheduling_strategy,
// plus label selectors). The zero value is the default policy: the caller's
// node until it is about half used, then the least loaded node.
//
//	f.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx, x)
//	cls.Options(sdk.Scheduling(sdk.NodeAffinity(nodeID, false))).Remote(ctx)
//	f.Options(sdk.Scheduling(sdk.Labels(map[string][]string{"zone": {"a", "b"}})))
type Strategy struct {
	s core.Strategy
}

// Spread spreads tasks or actors over the nodes that fit them.
func Spread() Strategy { return Strategy{core.Spread()} }

// NodeAffinity runs on the node with id nodeID (RuntimeContext.NodeID, or
// a node id from ClusterStatus). Hard affinity (soft false) fails with an
// ErrUnschedulable task error when that node is dead, unknown or can never
// fit the demand; soft affinity runs elsewhere then.
func NodeAffinity(nodeID NodeID, soft bool) Strategy {
	return Strategy{core.NodeAffinity(protos.NodeID(nodeID), soft)}
}

// Labels is the default policy restricted to nodes whose labels match sel:
// for every key, the node's label must be one of the listed values.
func Labels(sel map[string][]string) Strategy { return Strategy{core.Labels(sel)} }

// WithLabels adds a label selector to s.
func (s Strategy) WithLabels(sel map[string][]string) Strategy {
	return Strategy{s.s.WithLabels(sel)}
}
