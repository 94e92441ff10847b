package core

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/goray/goray/protos"
)

// Strategy says where a task or actor may run (Ray's scheduling_strategy,
// plus label selectors). The zero value is the default policy: the caller's
// node until it is about half used, then the least loaded node.
//
//	f.Options(sdk.Scheduling(sdk.Spread())).Remote(ctx, x)
//	cls.Options(sdk.ActorScheduling(sdk.NodeAffinity(nodeID, false))).Remote(ctx)
//	f.Options(sdk.Scheduling(sdk.Labels(map[string][]string{"zone": {"a", "b"}})))
type Strategy struct {
	kind   protos.SchedulingStrategy_Kind
	node   protos.NodeID
	soft   bool
	labels map[string][]string
	// group, bundle: PLACEMENT_GROUP (placement_group.go); groupBundles
	// is the group's bundle count, to check bundle against.
	group        protos.UniqueID
	bundle       int
	groupBundles int
}

// Spread spreads tasks or actors over the nodes that fit them.
func Spread() Strategy { return Strategy{kind: protos.SchedulingStrategy_SPREAD} }

// NodeAffinity runs on the node with id nodeID (RuntimeContext.NodeID, or
// a node id from ClusterStatus). Hard affinity (soft false) fails with an
// ErrUnschedulable task error when that node is dead, unknown or can never
// fit the demand; soft affinity runs elsewhere then.
func NodeAffinity(nodeID protos.NodeID, soft bool) Strategy {
	return Strategy{kind: protos.SchedulingStrategy_NODE_AFFINITY, node: nodeID, soft: soft}
}

// Labels is the default policy restricted to nodes whose labels match sel:
// for every key, the node's label must be one of the listed values.
func Labels(sel map[string][]string) Strategy { return Strategy{}.WithLabels(sel) }

// WithLabels adds a label selector to s.
func (s Strategy) WithLabels(sel map[string][]string) Strategy {
	s.labels = maps.Clone(s.labels)
	if s.labels == nil {
		s.labels = map[string][]string{}
	}
	for k, v := range sel {
		s.labels[k] = slices.Clone(v)
	}
	return s
}

// proto is the wire form; nil for the zero Strategy, so default calls stay
// on the raylet's fast path.
func (s Strategy) proto() *protos.SchedulingStrategy {
	if s.kind == protos.SchedulingStrategy_DEFAULT && len(s.labels) == 0 {
		return nil
	}
	p := &protos.SchedulingStrategy{Kind: s.kind, Soft: s.soft}
	switch s.kind {
	case protos.SchedulingStrategy_NODE_AFFINITY:
		p.NodeId = s.node.Bytes()
	case protos.SchedulingStrategy_PLACEMENT_GROUP:
		p.PlacementGroupId, p.BundleIndex = s.group.Bytes(), int32(s.bundle)
	}
	if len(s.labels) > 0 {
		p.Labels = make(map[string]*protos.LabelValues, len(s.labels))
		for k, v := range s.labels {
			p.Labels[k] = &protos.LabelValues{Values: v}
		}
	}
	return p
}

// validate names what is wrong with s, before anything is submitted.
func (s Strategy) validate() error {
	if s.kind == protos.SchedulingStrategy_NODE_AFFINITY && s.node.IsZero() {
		return fmt.Errorf("node affinity needs a node id")
	}
	if s.kind == protos.SchedulingStrategy_PLACEMENT_GROUP {
		switch {
		case s.group.IsZero():
			return fmt.Errorf("placement group strategy without a group")
		case s.bundle < -1 || (s.groupBundles > 0 && s.bundle >= s.groupBundles):
			return fmt.Errorf("bundle index %d of a placement group with %d bundles (want 0-%d, or -1 for any)", s.bundle, s.groupBundles, s.groupBundles-1)
		}
	}
	for k, v := range s.labels {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("label selector with an empty label name")
		}
		if len(v) == 0 {
			return fmt.Errorf("label selector %q lists no value", k)
		}
	}
	return nil
}

// key tells strategies apart in the submitter's queues: tasks with
// different strategies never share a lease.
func (s Strategy) key() string {
	if s.proto() == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "|%d:%s:%t:%s:%d", s.kind, s.node, s.soft, s.group, s.bundle)
	for _, k := range slices.Sorted(maps.Keys(s.labels)) {
		fmt.Fprintf(&b, ":%s=%s", k, strings.Join(s.labels[k], ","))
	}
	return b.String()
}

// Scheduling sets where a task runs.
func Scheduling(s Strategy) CallOption { return func(o *CallOptions) { o.strategy = s } }

// ActorScheduling sets where an actor is placed. An invalid strategy (node
// affinity without a node) makes the actor die unschedulable.
func ActorScheduling(s Strategy) ActorOption {
	return func(o *ActorOptions) { o.p.Strategy = s.proto() }
}
