package sdk

import (
	"context"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/state"
)

// MemorySummary asks every alive node of the cluster for its objects and
// store and joins the answers (what `goray memory` prints, Ray's `ray
// memory`): each object's owner, size, where it is and why it is alive.
// Nodes that do not answer are listed in the report's Errors; when none
// answers it returns the report and an error.
func MemorySummary(ctx context.Context) (*state.MemoryReport, error) {
	return core.MemorySummary(ctx)
}
