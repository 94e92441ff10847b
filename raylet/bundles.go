package raylet

import (
	"fmt"
	"strings"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Placement group bundles on this node, reserved in two phases by the GCS
// (Ray's design): PREPARE_BUNDLES sets the bundles' resources aside, all or
// none; COMMIT_BUNDLES turns them into group resources that tasks and
// actors of the group demand instead of the plain ones; CANCEL_BUNDLES
// gives them back, ending the leases that hold group resources (their
// workers are killed, as Ray kills what runs in a removed group).
//
// Group resources are named as Ray names them, so that the ordinary
// feasibility and fit checks confine a lease to its group's nodes:
// "<resource>_group_<index>_<group id>" for one bundle and
// "<resource>_group_<group id>" for any bundle of the group on this node;
// "bundle" (1000 units per bundle) lets a lease that asks for no resource
// still target a bundle.

// BundleResource is the resource name of one bundle's resource.
func BundleResource(name string, index int, group protos.UniqueID) string {
	return fmt.Sprintf("%s_group_%d_%s", name, index, group)
}

// GroupResource is the resource name of a group's resource on any bundle.
func GroupResource(name string, group protos.UniqueID) string {
	return fmt.Sprintf("%s_group_%s", name, group)
}

// BundleMarker is the resource every bundle has 1000 units of.
const BundleMarker = "bundle"

// bundleMarkerUnits is what each bundle holds of BundleMarker.
const bundleMarkerUnits = 1000 * resourceUnit

// groupBundles is a group's reservation on this node.
type groupBundles struct {
	bundles   map[int32]ResourceSet
	committed bool
	// added is what commit added to total and available.
	added ResourceSet
}

func (g *groupBundles) sum() ResourceSet {
	out := ResourceSet{}
	for _, b := range g.bundles {
		out.Add(b)
	}
	return out
}

func (s *state) prepareBundles(m *protos.PrepareBundlesRequest) error {
	id, err := protos.UniqueIDFromBytes(m.GetPlacementGroupId())
	if err != nil {
		return wire.NewError("invalid", "prepare bundles: group id: %v", err)
	}
	if _, ok := s.groups[id]; ok {
		return nil // a retried prepare
	}
	g := &groupBundles{bundles: map[int32]ResourceSet{}}
	for _, b := range m.GetBundles() {
		rs, err := FromProto(b.GetResources())
		if err != nil {
			return wire.NewError("invalid", "prepare bundles of group %s: bundle %d: %v", id.Short(), b.GetIndex(), err)
		}
		g.bundles[b.GetIndex()] = rs
	}
	need := g.sum()
	if !s.available.Fits(need) {
		return wire.NewError("no_resources", "node %s cannot reserve %s for group %s now (available %s)", s.r.cfg.NodeID.Short(), need, id.Short(), s.available)
	}
	s.available.Sub(need)
	if s.groups == nil {
		s.groups = map[protos.UniqueID]*groupBundles{}
	}
	s.groups[id] = g
	s.r.cfg.Logger.Debug().Str("group", id.Short()).Int("bundles", len(g.bundles)).Str("reserved", need.String()).Msg("bundles prepared")
	return nil
}

func (s *state) commitBundles(m *protos.CommitBundlesRequest) error {
	id, err := protos.UniqueIDFromBytes(m.GetPlacementGroupId())
	if err != nil {
		return wire.NewError("invalid", "commit bundles: group id: %v", err)
	}
	g, ok := s.groups[id]
	if !ok {
		return wire.NewError("unknown_group", "commit bundles: group %s has no prepared bundles on node %s", id.Short(), s.r.cfg.NodeID.Short())
	}
	if g.committed {
		return nil
	}
	g.added = ResourceSet{}
	for i, b := range g.bundles {
		for k, v := range b {
			g.added[BundleResource(k, int(i), id)] += v
			g.added[GroupResource(k, id)] += v
		}
		g.added[BundleResource(BundleMarker, int(i), id)] += bundleMarkerUnits
		g.added[GroupResource(BundleMarker, id)] += bundleMarkerUnits
	}
	s.total.Add(g.added)
	s.available.Add(g.added)
	g.committed = true
	s.r.cfg.Logger.Debug().Str("group", id.Short()).Str("resources", g.added.String()).Msg("bundles committed")
	return nil
}

// cancelBundles frees a group's reservation; unknown groups are fine (the
// GCS cancels everywhere it may have prepared).
func (s *state) cancelBundles(m *protos.CancelBundlesRequest) error {
	id, err := protos.UniqueIDFromBytes(m.GetPlacementGroupId())
	if err != nil {
		return wire.NewError("invalid", "cancel bundles: group id: %v", err)
	}
	g, ok := s.groups[id]
	if !ok {
		return nil
	}
	delete(s.groups, id)
	if g.committed {
		suffix := "_group_" + id.String()
		killed := 0
		for _, l := range s.leases {
			if !holdsGroup(l.demand, suffix) {
				continue
			}
			s.release(l)
			if !l.worker.killed {
				killed++
				l.worker.kill()
			}
		}
		for k := range g.added {
			delete(s.total, k)
			delete(s.available, k)
		}
		// Requests for the group that wait here can never be granted.
		kept := s.queue[:0]
		for _, lr := range s.queue {
			if holdsGroup(lr.demand, suffix) {
				_ = lr.conn.ReplyError(lr.req, wire.NewError("unschedulable", "%s: its placement group %s was removed", lr.function, id.Short()))
				continue
			}
			kept = append(kept, lr)
		}
		for i := len(kept); i < len(s.queue); i++ {
			s.queue[i] = nil
		}
		s.queue = kept
		if killed > 0 {
			s.r.cfg.Logger.Info().Str("group", id.Short()).Int("workers", killed).Msg("placement group removed: killed the workers running in it")
		}
	}
	s.available.Add(g.sum())
	return nil
}

// holdsGroup reports whether a demand uses resources of the group whose
// names end in suffix.
func holdsGroup(d ResourceSet, suffix string) bool {
	for k := range d {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

// groupRemovedMsg tells the raylet actor a placement group was removed.
type groupRemovedMsg struct{ id protos.UniqueID }

// removedGroupMemory is how long a raylet remembers removed groups, to
// fail lease requests for them (a retry of a task killed with its group)
// rather than hold them as infeasible forever.
const removedGroupMemory = 10 * time.Minute

// GroupRemoved tells the raylet that a placement group was removed
// anywhere in the cluster: requests demanding its resources fail.
func (r *Raylet) GroupRemoved(id protos.UniqueID) {
	if r.pid != nil {
		r.system.Root.Send(r.pid, groupRemovedMsg{id: id})
	}
}

func (s *state) groupRemoved(id protos.UniqueID) {
	now := s.now()
	if s.removedGroups == nil {
		s.removedGroups = map[string]time.Time{}
	}
	// Forget in removal order: the oldest are at the front.
	for len(s.removedOrder) > 0 && now.Sub(s.removedGroups[s.removedOrder[0]]) > removedGroupMemory {
		delete(s.removedGroups, s.removedOrder[0])
		s.removedOrder = s.removedOrder[1:]
	}
	k := id.String()
	if _, ok := s.removedGroups[k]; !ok {
		s.removedOrder = append(s.removedOrder, k)
	}
	s.removedGroups[k] = now
}

// removedGroupOf returns the id of a removed group whose resources demand
// asks for, or "".
func (s *state) removedGroupOf(demand ResourceSet) string {
	if len(s.removedGroups) == 0 {
		return ""
	}
	for k := range demand {
		i := strings.LastIndex(k, "_group_")
		if i < 0 {
			continue
		}
		rest := k[i+len("_group_"):]
		if j := strings.LastIndexByte(rest, '_'); j >= 0 {
			rest = rest[j+1:]
		}
		if _, ok := s.removedGroups[rest]; ok {
			return rest
		}
	}
	return ""
}
