package main

import (
	"context"
	"fmt"

	"github.com/goray/goray/sdk"
)

// pgCustom is the "custom" resource of the benchmark cluster's node; each
// group takes a sliver of it, so groups never wait for one another.
const pgCustom = 100

// pgBatch is how many groups one round creates, waits for and removes.
const pgBatch = 100

// placement_group_create/removal is ray_perf's: create a batch of
// single-bundle groups ({"custom": 0.001}), wait until each is ready, then
// remove them all; the figure is groups per second.
func benchPlacementGroups(ctx context.Context, h *harness) ([]result, error) {
	bundles := []map[string]float64{{"custom": 0.001}}
	groups := make([]sdk.PlacementGroup, pgBatch)
	return h.rate(ctx, "placement_group_create/removal", pgBatch, "per_s", func() error {
		for i := range groups {
			g, err := sdk.CreatePlacementGroup(ctx, bundles, sdk.PlacementPack)
			if err != nil {
				return fmt.Errorf("create group %d: %w", i, err)
			}
			groups[i] = g
		}
		for i, g := range groups {
			if err := g.Ready(ctx); err != nil {
				return fmt.Errorf("group %d: %w", i, err)
			}
		}
		for i, g := range groups {
			if err := sdk.RemovePlacementGroup(ctx, g); err != nil {
				return fmt.Errorf("remove group %d: %w", i, err)
			}
		}
		return nil
	})
}
