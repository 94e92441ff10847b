package raylet

import (
	"errors"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet/scheduling"
)

// The cluster resource view: what this raylet knows of the other nodes, fed
// by their reports (UpdatePeer) and the GCS's node events (RemovePeer). It
// lives in the raylet actor with the rest of the state, so scheduling
// decisions see one consistent snapshot.

// Messages to the raylet actor.
type (
	peerUpdate  struct{ info *protos.NodeInfo }
	peerRemoved struct{ id protos.NodeID }
)

// peerNode is another node as this raylet sees it. available is its last
// report minus what this raylet has sent its way since (Ray's raylets do
// the same, so that a burst of spillbacks does not all land on the node
// that looked idlest a second ago).
type peerNode struct {
	info      *protos.NodeInfo
	total     ResourceSet
	available ResourceSet
	seen      time.Time
}

// UpdatePeer records another node's report in the cluster view. Reports of
// this node itself are ignored.
func (r *Raylet) UpdatePeer(info *protos.NodeInfo) {
	id, err := protos.UniqueIDFromBytes(info.GetNodeId())
	if err != nil || id == r.cfg.NodeID || r.pid == nil {
		return
	}
	if info.GetState() == protos.NodeInfo_DEAD {
		r.RemovePeer(id)
		return
	}
	r.peerAddrs.Store(id, peerAddress{raylet: info.GetRayletTcpEndpoint(), transfer: info.GetTransferAddress()})
	r.system.Root.Send(r.pid, peerUpdate{info: info})
}

// RemovePeer drops a node that died or left from the cluster view.
func (r *Raylet) RemovePeer(id protos.NodeID) {
	if id == r.cfg.NodeID || r.pid == nil {
		return
	}
	r.peerAddrs.Delete(id)
	r.system.Root.Send(r.pid, peerRemoved{id: id})
	// A node of this machine that died by SIGKILL left its segment, and
	// the next raylet to start here may be a long way off.
	r.sweepStaleSegments()
}

// sweepStaleSegments runs removeStaleSegments in the background, one sweep
// at a time: a sweep in progress will see whatever a second would.
func (r *Raylet) sweepStaleSegments() {
	if !r.sweeping.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.sweeping.Store(false)
		r.removeStaleSegments()
	}()
}

// peerAddress is where a peer's raylet and transfer server listen; kept
// outside the actor because object pulls are served off it.
type peerAddress struct{ raylet, transfer string }

func (s *state) updatePeer(info *protos.NodeInfo) {
	id := protos.MustUniqueID(info.GetNodeId())
	total, err1 := FromProto(info.GetTotal())
	avail, err2 := FromProto(info.GetAvailable())
	if err1 != nil || err2 != nil {
		s.r.cfg.Logger.Warn().Str("node", id.Short()).Msg("ignoring a node report with invalid resources")
		return
	}
	if s.peers == nil {
		s.peers = map[protos.NodeID]*peerNode{}
	}
	p, ok := s.peers[id]
	if !ok {
		s.r.cfg.Logger.Info().Str("node", id.Short()).Str("resources", total.String()).Msg("node joined the cluster view")
		p = &peerNode{}
		s.peers[id] = p
	}
	p.info, p.total, p.available, p.seen = info, total, avail, s.now()
}

// peerSilence is how long a peer may go without a report before it leaves
// the view (its death event, which removes it at once, may have been
// missed); its next report brings it back.
const peerSilence = 15 * time.Second

// forgetSilentPeers drops the peers that stopped reporting.
func (s *state) forgetSilentPeers(now time.Time) {
	for id, p := range s.peers {
		if now.Sub(p.seen) > peerSilence {
			s.r.cfg.Logger.Warn().Str("node", id.Short()).Dur("silent", now.Sub(p.seen)).Msg("node stopped reporting; dropping it from the cluster view")
			s.removePeer(id)
			s.r.peerAddrs.Delete(id)
		}
	}
}

func (s *state) removePeer(id protos.NodeID) {
	if _, ok := s.peers[id]; ok {
		s.r.cfg.Logger.Info().Str("node", id.Short()).Msg("node left the cluster view")
		delete(s.peers, id)
	}
}

// view is the scheduling snapshot: this node with localAvail (what
// dispatch has not yet promised to queued requests) and every peer.
func (s *state) view(localAvail ResourceSet) scheduling.View {
	local := s.r.cfg.NodeID.String()
	nodes := make([]scheduling.Node, 0, len(s.peers)+1)
	nodes = append(nodes, scheduling.Node{ID: local, Total: scheduling.Resources(s.total), Available: scheduling.Resources(localAvail), Labels: s.r.cfg.Labels, Alive: true})
	for id, p := range s.peers {
		nodes = append(nodes, scheduling.Node{ID: id.String(), Total: scheduling.Resources(p.total), Available: scheduling.Resources(p.available), Labels: p.info.GetLabels(), Alive: true})
	}
	return scheduling.View{Local: local, Nodes: nodes}
}

// placement is dispatch's verdict on one queued request.
type placement int

const (
	placeLocal      placement = iota // grant here when a worker is free
	placeWait                        // nothing fits now; keep it queued
	placeSpilled                     // answered with a spillback
	placeInfeasible                  // no node can ever fit it; keep it queued
	placeFailed                      // answered with an error
)

// place decides where a queued request goes. Requests forwarded by another
// raylet (no_spillback) and plain requests on a node that knows no peer
// stay on the fast path: local, or wait.
func (s *state) place(j *jobState, lr *leaseRequest, avail ResourceSet) placement {
	if g := s.removedGroupOf(lr.demand); g != "" {
		_ = lr.conn.ReplyError(lr.req, wire.NewError("unschedulable", "%s: its placement group %s was removed", lr.function, g))
		return placeFailed
	}
	runsHere := j.binaryFor(s.r.cfg.Platform) != nil
	if !runsHere && (lr.noSpillback || len(s.peers) == 0) {
		_ = lr.conn.ReplyError(lr.req, platformError(j, s.r.cfg.NodeID, s.r.cfg.Platform))
		return placeFailed
	}
	if runsHere && (lr.noSpillback || len(s.peers) == 0 && lr.strategy == nil) {
		switch {
		case !s.total.Fits(lr.demand):
			return placeInfeasible
		case !avail.Fits(lr.demand):
			return placeWait
		}
		return placeLocal
	}
	strategy := lr.strategy
	if len(s.peers) > 0 && !j.runsEverywhere(s) {
		// Only nodes of a platform the job has a binary for.
		if id, hard := hardAffinity(strategy); hard {
			if p := s.platformOf(id); p != "" && j.binaryFor(p) == nil {
				_ = lr.conn.ReplyError(lr.req, platformError(j, id, p))
				return placeFailed
			}
		}
		strategy = withPlatforms(strategy, j.platforms())
	}
	st, err := scheduling.StrategyFromProto(strategy, s.spreadIndex)
	if err != nil {
		_ = lr.conn.ReplyError(lr.req, wire.NewError("invalid", "%s: %v", lr.function, err))
		return placeFailed
	}
	if st.Kind == scheduling.Default {
		st.PreferredNode = lr.preferred
	}
	d, err := scheduling.Pick(s.view(avail), scheduling.Resources(lr.demand), st)
	switch {
	case errors.Is(err, scheduling.ErrInfeasible) && !runsHere && !s.anyRuns(j):
		_ = lr.conn.ReplyError(lr.req, platformError(j, s.r.cfg.NodeID, s.r.cfg.Platform))
		return placeFailed
	case errors.Is(err, scheduling.ErrInfeasible):
		return placeInfeasible
	case err != nil:
		_ = lr.conn.ReplyError(lr.req, wire.NewError("unschedulable", "%s: %v", lr.function, err))
		return placeFailed
	}
	if st.Kind == scheduling.Spread && d.Kind == scheduling.Scheduled {
		s.spreadIndex = d.NextSpreadIndex
	}
	target := d.NodeID
	if target == "" || target == s.r.cfg.NodeID.String() {
		if d.Kind == scheduling.Wait {
			return placeWait
		}
		return placeLocal
	}
	id, _ := protos.UniqueIDFromHex(target)
	p := s.peers[id]
	if p == nil {
		return placeWait
	}
	if d.Kind == scheduling.Scheduled {
		p.available.Sub(lr.demand)
	}
	s.r.cfg.Logger.Debug().Str("function", lr.function).Str("demand", lr.demand.String()).Str("to", id.Short()).Stringer("decision", d.Kind).Msg("lease spilled back")
	_ = lr.conn.Reply(lr.req, &protos.RequestWorkerLeaseReply{RetryAt: p.info})
	return placeSpilled
}

// runsEverywhere reports whether j has a binary for the platform of every
// node s knows (the common case: one platform), so its requests need no
// platform filter.
func (j *jobState) runsEverywhere(s *state) bool {
	if j.binaryFor(s.r.cfg.Platform) == nil {
		return false
	}
	for _, p := range s.peers {
		if j.binaryFor(p.info.GetLabels()[PlatformLabel]) == nil {
			return false
		}
	}
	return true
}

// anyRuns reports whether some node s knows can run j's binary.
func (s *state) anyRuns(j *jobState) bool {
	if j.binaryFor(s.r.cfg.Platform) != nil {
		return true
	}
	for _, p := range s.peers {
		if j.binaryFor(p.info.GetLabels()[PlatformLabel]) != nil {
			return true
		}
	}
	return false
}

// platformOf is the platform of node id ("" if unknown).
func (s *state) platformOf(id protos.NodeID) string {
	if id == s.r.cfg.NodeID {
		return s.r.cfg.Platform
	}
	if p := s.peers[id]; p != nil {
		return p.info.GetLabels()[PlatformLabel]
	}
	return ""
}

// hardAffinity returns the node of a hard NODE_AFFINITY strategy.
func hardAffinity(st *protos.SchedulingStrategy) (protos.NodeID, bool) {
	if st.GetKind() != protos.SchedulingStrategy_NODE_AFFINITY || st.GetSoft() {
		return protos.NodeID{}, false
	}
	id, err := protos.UniqueIDFromBytes(st.GetNodeId())
	return id, err == nil
}
