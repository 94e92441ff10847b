package sdk

import (
	"context"
	"time"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/protos"
)

// Placement groups (Ray's): bundles of resources reserved atomically
// across the cluster, all or none, which tasks and actors then run in.
//
//	pg, err := sdk.CreatePlacementGroup(ctx, []map[string]float64{{"CPU": 1}, {"CPU": 1}}, sdk.PlacementStrictSpread)
//	if err := pg.Ready(ctx); err != nil { ... }
//	ref := f.Options(sdk.InPlacementGroup(pg, 0)).Remote(ctx, x)
//	...
//	err = sdk.RemovePlacementGroup(ctx, pg) // kills what runs in it

// PlacementStrategy says how a group's bundles spread over nodes.
type PlacementStrategy int

const (
	// PlacementPack: as few nodes as possible (Ray's default).
	PlacementPack PlacementStrategy = iota
	// PlacementSpread: distinct nodes where possible.
	PlacementSpread
	// PlacementStrictPack: all bundles on one node, or the group waits.
	PlacementStrictPack
	// PlacementStrictSpread: every bundle on its own node, or the group
	// waits.
	PlacementStrictSpread
)

// The sdk's strategies are the runtime's, in the same order.
var _ = [1]struct{}{}[PlacementStrictSpread-PlacementStrategy(core.PlacementStrictSpread)]

// PlacementGroup is a handle on a placement group.
type PlacementGroup struct {
	pg core.PlacementGroup
}

// ID returns the group's id.
func (pg PlacementGroup) ID() PlacementGroupID { return PlacementGroupID(pg.pg.ID()) }

// BundleCount returns the number of bundles.
func (pg PlacementGroup) BundleCount() int { return pg.pg.BundleCount() }

// PGOption sets an option of CreatePlacementGroup.
type PGOption struct{ o core.PGOption }

// PGName names the group, so GetPlacementGroup finds it (unique among the
// live groups of its namespace).
func PGName(name string) PGOption { return PGOption{core.PGName(name)} }

// PGNamespace sets the namespace of a named group (default: the job's).
func PGNamespace(ns string) PGOption { return PGOption{core.PGNamespace(ns)} }

// PGDetached lets the group outlive its job (else it is removed when the
// driver exits).
func PGDetached() PGOption { return PGOption{core.PGDetached()} }

// CreatePlacementGroup asks for bundles placed by strategy. It returns at
// once; Ready or Wait tell when every bundle is reserved. Bundles that are
// empty, or amounts that are zero or negative, are an error wrapping
// ErrArgument.
func CreatePlacementGroup(ctx context.Context, bundles []map[string]float64, strategy PlacementStrategy, opts ...PGOption) (PlacementGroup, error) {
	co := make([]core.PGOption, len(opts))
	for i, o := range opts {
		co[i] = o.o
	}
	pg, err := core.CreatePlacementGroup(ctx, bundles, core.PlacementStrategy(strategy), co...)
	return PlacementGroup{pg}, err
}

// GetPlacementGroup finds a live named group in the job's namespace (or
// the one PGNamespace names, given as namespace; "" for the job's).
func GetPlacementGroup(ctx context.Context, name, namespace string) (PlacementGroup, error) {
	pg, err := core.GetPlacementGroup(ctx, name, namespace)
	return PlacementGroup{pg}, err
}

// RemovePlacementGroup frees the group's bundles; the tasks and actors
// running in it are killed. Removing twice is not an error.
func RemovePlacementGroup(ctx context.Context, pg PlacementGroup) error {
	return core.RemovePlacementGroup(ctx, pg.pg)
}

// PlacementGroupInfo is a snapshot of a group's record.
type PlacementGroupInfo struct {
	ID        PlacementGroupID
	Name      string
	Namespace string
	// State is PENDING, CREATED, RESCHEDULING or REMOVED.
	State    string
	Strategy PlacementStrategy
	Bundles  []map[string]float64
	// BundleNodes is the node of each bundle once created (a zero id for
	// a bundle being reserved again).
	BundleNodes []NodeID
	// PendingReason says why the group still waits, if it does.
	PendingReason string
	Created       time.Time
}

// Info returns the group's record: state, bundles, the node of each
// bundle once created, and why it still waits if it does.
func (pg PlacementGroup) Info(ctx context.Context) (*PlacementGroupInfo, error) {
	p, err := pg.pg.Info(ctx)
	if err != nil {
		return nil, err
	}
	spec := p.GetSpec()
	info := &PlacementGroupInfo{
		ID: pg.ID(), Name: spec.GetName(), Namespace: spec.GetNamespace(),
		State:         trimEnum(p.GetState().String(), "PG_"),
		Strategy:      PlacementStrategy(spec.GetStrategy()),
		PendingReason: p.GetPendingReason(),
		Created:       time.UnixMilli(p.GetCreateTimeUnixMs()),
	}
	for _, b := range spec.GetBundles() {
		info.Bundles = append(info.Bundles, b.GetAmounts())
	}
	for _, n := range p.GetBundleNodes() {
		id, _ := protos.UniqueIDFromBytes(n)
		info.BundleNodes = append(info.BundleNodes, NodeID(id))
	}
	return info, nil
}

// Ready waits until every bundle is reserved, the group is removed
// (ErrPlacementGroupRemoved) or ctx ends. A group that was created and is
// being rescheduled (a node holding some of its bundles died) counts as
// ready, as in Ray.
func (pg PlacementGroup) Ready(ctx context.Context) error { return pg.pg.Ready(ctx) }

// Wait is Ray's pg.wait(timeout): whether the group is ready within
// timeout.
func (pg PlacementGroup) Wait(ctx context.Context, timeout time.Duration) (bool, error) {
	return pg.pg.Wait(ctx, timeout)
}
