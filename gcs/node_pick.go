package gcs

import (
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet/scheduling"
)

// Where actors go. The node manager holds the cluster's resource view (the
// raylets' reports), so it makes the decision with the scheduling policies
// the raylets use for tasks, and subtracts what it placed from the chosen
// node's available resources until that node's next report shows them
// (so that a burst of actors is spread by what was just placed, not by a
// report from a second ago).

// pickNodeRequest asks the node manager where to place demand.
type pickNodeRequest struct {
	demand   *protos.Resources
	strategy *protos.SchedulingStrategy
	// preferred is tried first under the DEFAULT policy (the owner's node).
	preferred []byte
	excluded  map[protos.NodeID]bool
}

// pickNodeReply is the decision: node to lease on (nil with wait: nothing
// fits now, retry later), or err (wrapping scheduling.ErrUnschedulable or
// ErrInfeasible).
type pickNodeReply struct {
	node *protos.NodeInfo
	wait bool
	err  error
	// fallback, when nothing fits now or ever, is where to queue the
	// request meanwhile: the preferred node if alive, else another.
	fallback *protos.NodeInfo
}

func (m *nodeManager) pick(req pickNodeRequest) pickNodeReply {
	demand, err := scheduling.FromAmounts(req.demand.GetAmounts())
	if err != nil {
		return pickNodeReply{err: err}
	}
	st, err := scheduling.StrategyFromProto(req.strategy, m.spreadIndex)
	if err != nil {
		return pickNodeReply{err: err}
	}
	if st.Kind == scheduling.Default && len(req.preferred) > 0 {
		if id, err := protos.UniqueIDFromBytes(req.preferred); err == nil {
			st.PreferredNode = id.String()
		}
	}
	v, byID := m.view(req.excluded)
	d, err := scheduling.Pick(v, demand, st)
	if err != nil {
		return pickNodeReply{err: err, fallback: fallbackNode(v, byID, req.preferred)}
	}
	if d.NodeID == "" {
		return pickNodeReply{wait: true, fallback: fallbackNode(v, byID, req.preferred)}
	}
	n := byID[d.NodeID]
	if d.Kind == scheduling.Scheduled {
		if st.Kind == scheduling.Spread {
			m.spreadIndex = d.NextSpreadIndex
		}
		if n.placed == nil {
			n.placed = scheduling.Resources{}
		}
		n.placed.Add(demand)
	}
	// A Wait on a named node (hard affinity to a busy node) leases there:
	// the raylet queues the request until the node has room.
	return pickNodeReply{node: n.info}
}

// fallbackNode is the preferred node if it is in the view, else the view's
// first node in id order, else nil.
func fallbackNode(v scheduling.View, byID map[string]*nodeEntry, preferred []byte) *protos.NodeInfo {
	if id, err := protos.UniqueIDFromBytes(preferred); err == nil {
		if n := byID[id.String()]; n != nil {
			return n.info
		}
	}
	first := ""
	for _, n := range v.Nodes {
		if first == "" || n.ID < first {
			first = n.ID
		}
	}
	if first == "" {
		return nil
	}
	return byID[first].info
}

// unplaced gives back what pick counted on a node for a lease that failed.
type unplaced struct {
	node   protos.NodeID
	demand *protos.Resources
}

func (m *nodeManager) unplace(msg unplaced) {
	n, ok := m.nodes[msg.node]
	if !ok || n.placed == nil {
		return // a report since has replaced the estimate
	}
	d, err := scheduling.FromAmounts(msg.demand.GetAmounts())
	if err != nil {
		return
	}
	for k, v := range d {
		if n.placed[k] -= v; n.placed[k] <= 0 {
			delete(n.placed, k)
		}
	}
}

// placeBundlesRequest asks the node manager where a placement group's
// bundles go.
type placeBundlesRequest struct {
	bundles  []scheduling.Resources
	strategy scheduling.PGStrategy
	// excluded nodes take no bundle (a STRICT_SPREAD group's other nodes
	// when some of its bundles are placed again).
	excluded map[protos.NodeID]bool
}

// placeBundlesReply gives each bundle's node, or err (wrapping
// scheduling.ErrWait or ErrInfeasible).
type placeBundlesReply struct {
	nodes []*protos.NodeInfo
	err   error
}

func (m *nodeManager) placeBundles(req placeBundlesRequest) placeBundlesReply {
	v, byID := m.view(req.excluded)
	ids, err := scheduling.PlaceBundles(v, req.bundles, req.strategy)
	if err != nil {
		return placeBundlesReply{err: err}
	}
	out := make([]*protos.NodeInfo, len(ids))
	for i, id := range ids {
		n := byID[id]
		if n.placed == nil {
			n.placed = scheduling.Resources{}
		}
		n.placed.Add(req.bundles[i])
		out[i] = n.info
	}
	return placeBundlesReply{nodes: out}
}

// view is the scheduling snapshot of the alive nodes with a raylet, not
// excluded: their last reports less what was placed on them since, and
// the entries by id.
func (m *nodeManager) view(excluded map[protos.NodeID]bool) (scheduling.View, map[string]*nodeEntry) {
	v := scheduling.View{}
	byID := map[string]*nodeEntry{}
	for id, n := range m.nodes {
		if n.info.GetState() != protos.NodeInfo_ALIVE || n.info.GetRayletEndpoint() == "" || excluded[id] || !n.resOK {
			continue
		}
		avail := n.avail
		if n.placed != nil {
			avail = avail.Clone()
			avail.Sub(n.placed)
		}
		v.Nodes = append(v.Nodes, scheduling.Node{ID: id.String(), Total: n.total, Available: avail, Labels: n.info.GetLabels(), Alive: true})
		byID[id.String()] = n
	}
	return v, byID
}
