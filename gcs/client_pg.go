package gcs

import (
	"context"

	"github.com/goray/goray/protos"
)

// CreatePlacementGroup registers a placement group and starts reserving
// its bundles; it returns the group's record (PENDING). Invalid bundles
// give an error wrapping ErrInvalid, a taken name ErrAlreadyExists.
func (c *Client) CreatePlacementGroup(ctx context.Context, spec *protos.PlacementGroupSpec) (*protos.PlacementGroupInfo, error) {
	rep := &protos.CreatePlacementGroupReply{}
	if err := c.call(ctx, SubjectPGCreate, &protos.CreatePlacementGroupRequest{Spec: spec}, rep); err != nil {
		return nil, err
	}
	return rep.GetInfo(), nil
}

// GetPlacementGroup returns a live group's record, or an error wrapping
// ErrNotFound (it never existed, or was removed).
func (c *Client) GetPlacementGroup(ctx context.Context, id protos.UniqueID) (*protos.PlacementGroupInfo, error) {
	rep := &protos.GetPlacementGroupReply{}
	if err := c.call(ctx, SubjectPGGet, &protos.GetPlacementGroupRequest{PlacementGroupId: id.Bytes()}, rep); err != nil {
		return nil, err
	}
	return rep.GetInfo(), nil
}

// GetNamedPlacementGroup finds a live group by name in a namespace.
func (c *Client) GetNamedPlacementGroup(ctx context.Context, name, namespace string) (*protos.PlacementGroupInfo, error) {
	rep := &protos.GetPlacementGroupReply{}
	if err := c.call(ctx, SubjectPGGet, &protos.GetPlacementGroupRequest{Name: name, Namespace: namespace}, rep); err != nil {
		return nil, err
	}
	return rep.GetInfo(), nil
}

// RemovePlacementGroup removes a group: its bundles are freed and the
// tasks and actors running in them are killed. Removing twice is fine.
func (c *Client) RemovePlacementGroup(ctx context.Context, id protos.UniqueID) error {
	return c.call(ctx, SubjectPGRemove, &protos.RemovePlacementGroupRequest{PlacementGroupId: id.Bytes()}, &protos.RemovePlacementGroupReply{})
}

// ListPlacementGroups returns the live groups.
func (c *Client) ListPlacementGroups(ctx context.Context) ([]*protos.PlacementGroupInfo, error) {
	rep := &protos.ListPlacementGroupsReply{}
	if err := c.call(ctx, SubjectPGList, &protos.ListPlacementGroupsRequest{}, rep); err != nil {
		return nil, err
	}
	return rep.GetGroups(), nil
}

// WatchPlacementGroup calls fn with the group's record on each of its
// state changes, until unsubscribe is called. Like WatchActor it returns
// once the subscription is active.
func (c *Client) WatchPlacementGroup(id protos.UniqueID, fn func(*protos.PlacementGroupInfo)) (unsubscribe func(), err error) {
	return watch(c, PlacementGroupSubject(id), func() *protos.PlacementGroupInfo { return &protos.PlacementGroupInfo{} }, fn)
}
