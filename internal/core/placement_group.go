package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
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

// ErrPlacementGroupRemoved: the group was removed (Ready, Wait).
var ErrPlacementGroupRemoved = errors.New("goray: placement group removed")

// PlacementGroup is a handle on a placement group.
type PlacementGroup struct {
	id      protos.UniqueID
	bundles int
}

// ID returns the group's id.
func (pg PlacementGroup) ID() protos.UniqueID { return pg.id }

// BundleCount returns the number of bundles.
func (pg PlacementGroup) BundleCount() int { return pg.bundles }

// PGOption sets an option of CreatePlacementGroup.
type PGOption func(*protos.PlacementGroupSpec)

// PGName names the group, so GetPlacementGroup finds it (unique among the
// live groups of its namespace).
func PGName(name string) PGOption { return func(s *protos.PlacementGroupSpec) { s.Name = name } }

// PGNamespace sets the namespace of a named group (default: the job's).
func PGNamespace(ns string) PGOption { return func(s *protos.PlacementGroupSpec) { s.Namespace = ns } }

// PGDetached lets the group outlive its job (else it is removed when the
// driver exits).
func PGDetached() PGOption { return func(s *protos.PlacementGroupSpec) { s.Detached = true } }

// CreatePlacementGroup asks for bundles placed by strategy. It returns at
// once; Ready or Wait tell when every bundle is reserved. Bundles that are
// empty, or amounts that are zero or negative, are an error wrapping
// ErrArgument.
func CreatePlacementGroup(ctx context.Context, bundles []map[string]float64, strategy PlacementStrategy, opts ...PGOption) (PlacementGroup, error) {
	cw, gc, err := gcsOf()
	if err != nil {
		return PlacementGroup{}, err
	}
	if strategy < PlacementPack || strategy > PlacementStrictSpread {
		return PlacementGroup{}, fmt.Errorf("%w: placement group: unknown strategy %d", ErrArgument, strategy)
	}
	spec := &protos.PlacementGroupSpec{
		PlacementGroupId: protos.NewUniqueID().Bytes(),
		JobId:            cw.jobID.Bytes(),
		Strategy:         protos.PlacementStrategy(strategy),
		Namespace:        cw.namespace,
	}
	for _, b := range bundles {
		spec.Bundles = append(spec.Bundles, &protos.Resources{Amounts: maps.Clone(b)})
	}
	for _, o := range opts {
		o(spec)
	}
	info, err := gc.CreatePlacementGroup(ctx, spec)
	if errors.Is(err, gcs.ErrInvalid) {
		return PlacementGroup{}, fmt.Errorf("%w: %w", ErrArgument, err)
	}
	if err != nil {
		return PlacementGroup{}, err
	}
	return PlacementGroup{id: protos.MustUniqueID(info.GetSpec().GetPlacementGroupId()), bundles: len(bundles)}, nil
}

// GetPlacementGroup finds a live named group in the job's namespace (or
// the one PGNamespace names, given as namespace; "" for the job's).
func GetPlacementGroup(ctx context.Context, name, namespace string) (PlacementGroup, error) {
	cw, gc, err := gcsOf()
	if err != nil {
		return PlacementGroup{}, err
	}
	if namespace == "" {
		namespace = cw.namespace
	}
	info, err := gc.GetNamedPlacementGroup(ctx, name, namespace)
	if err != nil {
		return PlacementGroup{}, err
	}
	return PlacementGroup{id: protos.MustUniqueID(info.GetSpec().GetPlacementGroupId()), bundles: len(info.GetSpec().GetBundles())}, nil
}

// RemovePlacementGroup frees the group's bundles; the tasks and actors
// running in it are killed. Removing twice is not an error.
func RemovePlacementGroup(ctx context.Context, pg PlacementGroup) error {
	_, gc, err := gcsOf()
	if err != nil {
		return err
	}
	return gc.RemovePlacementGroup(ctx, pg.id)
}

// Info returns the group's record: state, bundles, the node of each
// bundle once created, and why it still waits if it does.
func (pg PlacementGroup) Info(ctx context.Context) (*protos.PlacementGroupInfo, error) {
	_, gc, err := gcsOf()
	if err != nil {
		return nil, err
	}
	info, err := gc.GetPlacementGroup(ctx, pg.id)
	if errors.Is(err, gcs.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrPlacementGroupRemoved, pg.id)
	}
	return info, err
}

// Ready waits until every bundle is reserved, the group is removed
// (ErrPlacementGroupRemoved) or ctx ends. A group that was created and is
// being rescheduled (a node holding some of its bundles died) counts as
// ready, as in Ray.
func (pg PlacementGroup) Ready(ctx context.Context) error {
	_, gc, err := gcsOf()
	if err != nil {
		return err
	}
	// Usually the group is placed by the time its creator asks: one
	// round trip then, and a subscription only when it must wait.
	info, err := pg.Info(ctx)
	if err != nil {
		return err
	}
	if st := info.GetState(); st == protos.PlacementGroupState_PG_CREATED || st == protos.PlacementGroupState_PG_RESCHEDULING {
		return nil
	}
	states := make(chan protos.PlacementGroupState, 4)
	unsub, err := gc.WatchPlacementGroup(pg.id, func(info *protos.PlacementGroupInfo) {
		select {
		case states <- info.GetState():
		default: // a state is already waiting to be read
		}
	})
	if err != nil {
		return err
	}
	defer unsub()
	info, err = pg.Info(ctx)
	if err != nil {
		return err
	}
	st := info.GetState()
	for {
		switch st {
		case protos.PlacementGroupState_PG_CREATED, protos.PlacementGroupState_PG_RESCHEDULING:
			return nil
		case protos.PlacementGroupState_PG_REMOVED:
			return fmt.Errorf("%w: %s", ErrPlacementGroupRemoved, pg.id)
		}
		select {
		case st = <-states:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Wait is Ray's pg.wait(timeout): whether the group is ready within
// timeout.
func (pg PlacementGroup) Wait(ctx context.Context, timeout time.Duration) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := pg.Ready(wctx)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return false, nil
	}
	return false, err
}

// InPlacementGroup runs a task in bundle bundle of pg (-1: any bundle of
// it). The task's resources come out of the bundle's reservation.
func InPlacementGroup(pg PlacementGroup, bundle int) CallOption {
	return func(o *CallOptions) { o.strategy = pgStrategy(pg, bundle) }
}

// ActorInPlacementGroup places an actor in bundle bundle of pg (-1: any).
// The actor dies when the group is removed.
func ActorInPlacementGroup(pg PlacementGroup, bundle int) ActorOption {
	return func(o *ActorOptions) { o.p.Strategy = pgStrategy(pg, bundle).proto() }
}

func pgStrategy(pg PlacementGroup, bundle int) Strategy {
	return Strategy{kind: protos.SchedulingStrategy_PLACEMENT_GROUP, group: pg.id, bundle: bundle, groupBundles: pg.bundles}
}

// groupDemand rewrites a demand to draw on a placement group's bundle
// resources, as Ray does: {CPU: 1} in bundle 0 becomes {CPU_group_0_<id>:
// 1, CPU_group_<id>: 1}, plus a sliver of the bundle marker so that a
// demand of nothing still lands in the bundle.
func groupDemand(demand map[string]float64, group protos.UniqueID, bundle int) map[string]float64 {
	out := make(map[string]float64, 2*len(demand)+2)
	add := func(k string, v float64) {
		if v <= 0 {
			return
		}
		out[raylet.GroupResource(k, group)] += v
		if bundle >= 0 {
			out[raylet.BundleResource(k, bundle, group)] += v
		}
	}
	for k, v := range demand {
		add(k, v)
	}
	add(raylet.BundleMarker, 0.001)
	return out
}

// gcsOf returns the caller's core worker and GCS client (a worker dials the
// GCS the first time).
func gcsOf() (*Worker, *gcs.Client, error) {
	cw := Current()
	if cw == nil {
		return nil, nil, ErrNotInitialized
	}
	gc, err := cw.GCS()
	if err != nil {
		return nil, nil, err
	}
	return cw, gc, nil
}
