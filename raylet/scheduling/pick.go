package scheduling

import (
	"fmt"
	"math"
)

// DefaultSpreadThreshold is Ray's scheduler_spread_threshold: the hybrid
// policy keeps packing the local (or preferred) node while its utilisation
// after placement stays below it.
const DefaultSpreadThreshold = 0.5

// StrategyKind selects the node-picking policy of a Strategy.
type StrategyKind int

const (
	// Default is Ray's hybrid policy: pack the local node until it is
	// DefaultSpreadThreshold utilised, then spread to the least-utilised node.
	Default StrategyKind = iota
	// Spread spreads tasks over nodes: least utilised first, ties broken
	// round-robin from SpreadIndex.
	Spread
	// NodeAffinity targets one node (see NodeAffinity).
	NodeAffinity
)

func (k StrategyKind) String() string {
	switch k {
	case Default:
		return "DEFAULT"
	case Spread:
		return "SPREAD"
	case NodeAffinity:
		return "NODE_AFFINITY"
	}
	return fmt.Sprintf("StrategyKind(%d)", int(k))
}

// Affinity names the node of a NodeAffinity strategy. Hard affinity (Soft
// false) fails with ErrUnschedulable when the node is dead, unknown, outside
// the label selector or too small; soft affinity falls back to Default then.
// Either way, a suitable node that is merely busy yields a Wait decision for
// that node (Ray's default, spill_on_unavailable=false).
type Affinity struct {
	NodeID string
	Soft   bool
}

// Strategy is a scheduling strategy. The zero value is Default with Ray's
// threshold and no constraints.
type Strategy struct {
	Kind StrategyKind
	// PreferredNode (Default only) is tried first, ahead of the local node,
	// when it fits now and stays under the threshold: the node holding most
	// of the task's large arguments, to avoid transferring them.
	PreferredNode string
	// SpreadThreshold overrides DefaultSpreadThreshold when positive.
	SpreadThreshold float64
	// SpreadIndex (Spread only) is the round-robin cursor; feed back
	// Decision.NextSpreadIndex so that repeated calls rotate.
	SpreadIndex int
	// Affinity is the target of NodeAffinity.
	Affinity Affinity
	// Labels is a hard filter applied before any policy (all kinds).
	Labels LabelSelector
}

// DecisionKind is the outcome of Pick.
type DecisionKind int

const (
	// Scheduled: lease on Decision.NodeID now.
	Scheduled DecisionKind = iota
	// Wait: feasible, but no eligible node has the resources available now;
	// queue and retry (on Decision.NodeID if set, e.g. node affinity).
	Wait
	// Infeasible: no alive eligible node can ever fit the demand; Pick also
	// returns an error wrapping ErrInfeasible or ErrUnschedulable.
	Infeasible
)

func (k DecisionKind) String() string {
	switch k {
	case Scheduled:
		return "scheduled"
	case Wait:
		return "wait"
	case Infeasible:
		return "infeasible"
	}
	return fmt.Sprintf("DecisionKind(%d)", int(k))
}

// Decision is the result of Pick.
type Decision struct {
	Kind   DecisionKind
	NodeID string
	// NextSpreadIndex is the cursor for the next Spread call: one past the
	// chosen node in ID order.
	NextSpreadIndex int
}

// candidate is a node that passed a pipeline step, with its position in the
// ID-sorted view.
type candidate struct {
	idx  int
	node Node
}

// Pick chooses a node for a lease demanding demand. It is pure: the caller
// subtracts demand from the chosen node's Available in its own view.
//
// Pipeline: eligible (alive, labels) -> feasible (demand fits Total) ->
// available (demand fits Available) -> score and pick per strategy.
func Pick(v View, demand Resources, s Strategy) (Decision, error) {
	if err := demand.validate(); err != nil {
		return Decision{Kind: Infeasible}, fmt.Errorf("%w: %v", ErrInvalidDemand, err)
	}
	nodes := v.sorted()
	if s.Kind == NodeAffinity {
		d, fallback, err := pickAffinity(nodes, demand, s)
		if !fallback {
			return d, err
		}
		// Soft affinity to an unsuitable node: fall back to Default.
		s = Strategy{Kind: Default, SpreadThreshold: s.SpreadThreshold, Labels: s.Labels}
	}
	feasible := feasibleNodes(nodes, demand, s.Labels)
	if len(feasible) == 0 {
		sel := ""
		if len(s.Labels) > 0 {
			sel = fmt.Sprintf(" with labels %v", map[string][]string(s.Labels))
		}
		return Decision{Kind: Infeasible}, fmt.Errorf("%w: no alive node%s can ever fit demand %v", ErrInfeasible, sel, demand)
	}
	avail := availableNodes(feasible, demand)
	if len(avail) == 0 {
		return Decision{Kind: Wait}, nil
	}
	var c candidate
	switch s.Kind {
	case Spread:
		c = leastUtilised(avail, demand, rotate(len(nodes), s.SpreadIndex))
	default:
		c = hybrid(nodes, avail, demand, v.Local, s)
	}
	return Decision{Kind: Scheduled, NodeID: c.node.ID, NextSpreadIndex: c.idx + 1}, nil
}

// pickAffinity handles NodeAffinity; fallback reports that soft affinity
// must fall back to Default.
func pickAffinity(nodes []Node, demand Resources, s Strategy) (d Decision, fallback bool, err error) {
	id := s.Affinity.NodeID
	i := indexOf(nodes, id)
	var why string
	switch {
	case i < 0:
		why = "unknown"
	case !nodes[i].Alive:
		why = "dead"
	case !s.Labels.Matches(nodes[i].Labels):
		why = fmt.Sprintf("excluded by labels %v", map[string][]string(s.Labels))
	case !demand.Fits(nodes[i].Total):
		why = fmt.Sprintf("total %v can never fit demand %v", nodes[i].Total, demand)
	case demand.Fits(nodes[i].Available):
		return Decision{Kind: Scheduled, NodeID: id, NextSpreadIndex: i + 1}, false, nil
	default:
		return Decision{Kind: Wait, NodeID: id}, false, nil
	}
	if s.Affinity.Soft {
		return Decision{}, true, nil
	}
	return Decision{Kind: Infeasible}, false, fmt.Errorf("%w: node affinity to %q: node %s", ErrUnschedulable, id, why)
}

// feasibleNodes keeps alive nodes matching sel whose Total fits demand.
func feasibleNodes(nodes []Node, demand Resources, sel LabelSelector) []candidate {
	var out []candidate
	for i, n := range nodes {
		if n.Alive && sel.Matches(n.Labels) && demand.Fits(n.Total) {
			out = append(out, candidate{i, n})
		}
	}
	return out
}

// availableNodes keeps candidates whose Available fits demand now.
func availableNodes(cs []candidate, demand Resources) []candidate {
	var out []candidate
	for _, c := range cs {
		if demand.Fits(c.node.Available) {
			out = append(out, c)
		}
	}
	return out
}

// leastUtilised returns the candidate with the lowest utilisation after
// placing demand, ties broken by the first in order (indexes of the sorted
// view). cs must be non-empty.
func leastUtilised(cs []candidate, demand Resources, order []int) candidate {
	rank := make(map[int]int, len(order))
	for r, i := range order {
		rank[i] = r
	}
	best, bestU := -1, math.Inf(1)
	for j, c := range cs {
		u := Utilisation(c.node.Total, c.node.Available, demand)
		if best < 0 || u < bestU || (u == bestU && rank[c.idx] < rank[cs[best].idx]) {
			best, bestU = j, u
		}
	}
	return cs[best]
}

// hybrid is Ray's hybrid policy: the preferred node, then the local node,
// if its utilisation (before this placement, as Ray computes it) is under
// the threshold; else the least utilised node, ties broken in ID order
// starting at the local node.
func hybrid(nodes []Node, avail []candidate, demand Resources, local string, s Strategy) candidate {
	threshold := s.SpreadThreshold
	if threshold <= 0 {
		threshold = DefaultSpreadThreshold
	}
	for _, want := range []string{s.PreferredNode, local} {
		if want == "" {
			continue
		}
		for _, c := range avail {
			if c.node.ID == want && Utilisation(c.node.Total, c.node.Available, nil) < threshold {
				return c
			}
		}
	}
	return leastUtilised(avail, demand, rotate(len(nodes), max(indexOf(nodes, local), 0)))
}
