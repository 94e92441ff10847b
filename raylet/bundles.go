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

// groupBundles is a group's reservation on this node, bundle by bundle:
// a group's bundles may arrive here at different times (those of a node
// that died are reserved again elsewhere, perhaps here).
type groupBundles struct {
	bundles   map[int32]ResourceSet
	committed map[int32]bool
}

// groupResources is what bundle i of group adds to the node once committed.
func groupResources(group protos.UniqueID, i int32, b ResourceSet) ResourceSet {
	out := ResourceSet{}
	for k, v := range b {
		out[BundleResource(k, int(i), group)] += v
		out[GroupResource(k, group)] += v
	}
	out[BundleResource(BundleMarker, int(i), group)] += bundleMarkerUnits
	out[GroupResource(BundleMarker, group)] += bundleMarkerUnits
	return out
}

// prepareBundles sets aside the resources of the bundles not yet reserved
// here, all of them or none.
func (s *state) prepareBundles(m *protos.PrepareBundlesRequest) error {
	set, err := checkPrepareBundles(m)
	if err != nil {
		return RequestError(protos.Method_PREPARE_BUNDLES, err)
	}
	id := set.group
	g := s.groups[id]
	fresh, need := set.bundles, ResourceSet{}
	for i, rs := range fresh {
		if g != nil {
			if _, ok := g.bundles[i]; ok {
				delete(fresh, i) // a retried prepare
				continue
			}
		}
		need.Add(rs) // cannot overflow: checkPrepareBundles summed them all
	}
	if len(fresh) == 0 {
		return nil
	}
	if !s.available.Fits(need) {
		return wire.NewError("no_resources", "node %s cannot reserve %s for group %s now (available %s)", s.r.cfg.NodeID.Short(), need, id.Short(), s.available)
	}
	s.available.Sub(need)
	if g == nil {
		g = &groupBundles{bundles: map[int32]ResourceSet{}, committed: map[int32]bool{}}
		if s.groups == nil {
			s.groups = map[protos.UniqueID]*groupBundles{}
		}
		s.groups[id] = g
	}
	for i, rs := range fresh {
		g.bundles[i] = rs
	}
	s.r.cfg.Logger.Debug().Str("group", id.Short()).Int("bundles", len(fresh)).Str("reserved", need.String()).Msg("bundles prepared")
	return nil
}

// commitBundles turns the group's prepared bundles into group resources.
func (s *state) commitBundles(m *protos.CommitBundlesRequest) error {
	id, err := parseID("placement_group_id", m.GetPlacementGroupId())
	if err != nil {
		return RequestError(protos.Method_COMMIT_BUNDLES, err)
	}
	g, ok := s.groups[id]
	if !ok {
		return wire.NewError("unknown_group", "commit bundles: group %s has no prepared bundles on node %s", id.Short(), s.r.cfg.NodeID.Short())
	}
	for i, b := range g.bundles {
		if g.committed[i] {
			continue
		}
		add := groupResources(id, i, b)
		s.total.Add(add)
		s.available.Add(add)
		g.committed[i] = true
	}
	s.r.cfg.Logger.Debug().Str("group", id.Short()).Int("bundles", len(g.bundles)).Msg("bundles committed")
	return nil
}

// cancelBundles frees bundles of a group (all of its bundles here, or
// those listed): the leases holding their resources end and their workers
// are killed. Unknown groups and bundles are fine (the GCS cancels
// everywhere it may have prepared).
func (s *state) cancelBundles(m *protos.CancelBundlesRequest) error {
	id, err := checkCancelBundles(m)
	if err != nil {
		return RequestError(protos.Method_CANCEL_BUNDLES, err)
	}
	g, ok := s.groups[id]
	if !ok {
		return nil
	}
	indexes := m.GetIndexes()
	if len(indexes) == 0 {
		for i := range g.bundles {
			indexes = append(indexes, i)
		}
	}
	// The group goes as a whole when every bundle it has here is listed
	// (indexes are distinct, so counting those it has is enough).
	listed := 0
	for _, i := range indexes {
		if _, ok := g.bundles[i]; ok {
			listed++
		}
	}
	all := listed == len(g.bundles)
	killed := 0
	for _, i := range indexes {
		b, ok := g.bundles[i]
		if !ok {
			continue
		}
		if g.committed[i] {
			// What runs on this bundle ends: on the whole group when it
			// goes, on the bundle's own resources otherwise.
			marker := "_group_" + id.String()
			if !all {
				marker = fmt.Sprintf("_group_%d_%s", i, id)
			}
			killed += s.endLeasesHolding(marker)
			rm := groupResources(id, i, b)
			s.total.Sub(rm)
			s.available.Sub(rm)
		}
		s.available.Add(b)
		delete(g.bundles, i)
		delete(g.committed, i)
	}
	if len(g.bundles) == 0 {
		delete(s.groups, id)
	}
	s.dropEmpty(id)
	if killed > 0 {
		s.r.cfg.Logger.Info().Str("group", id.Short()).Int("workers", killed).Msg("placement group bundles removed: killed the workers running in them")
	}
	return nil
}

// endLeasesHolding ends the leases whose demand names a resource ending in
// suffix, killing their workers, and fails queued requests for such
// resources; it returns how many workers it killed.
func (s *state) endLeasesHolding(suffix string) int {
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
	kept := s.queue[:0]
	for _, lr := range s.queue {
		if holdsGroup(lr.demand, suffix) {
			_ = lr.conn.ReplyError(lr.req, wire.NewError("unschedulable", "%s: its placement group bundle was removed", lr.function))
			continue
		}
		kept = append(kept, lr)
	}
	for i := len(kept); i < len(s.queue); i++ {
		s.queue[i] = nil
	}
	s.queue = kept
	return killed
}

// dropEmpty removes the group's resource entries that fell to zero, so
// that a removed group leaves no trace in the node's resources.
func (s *state) dropEmpty(group protos.UniqueID) {
	suffix := "_" + group.String()
	for k, v := range s.total {
		if v <= 0 && strings.HasSuffix(k, suffix) {
			delete(s.total, k)
			delete(s.available, k)
		}
	}
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
