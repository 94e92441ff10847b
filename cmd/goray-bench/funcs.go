package main

import (
	"context"
	"fmt"

	"github.com/goray/goray/sdk"
)

// Remote functions of the benchmark, registered at package init so the
// driver and the workers (which re-run this binary) build the same table.
var (
	// noop is Ray's small_value: a task that does nothing and returns a
	// tiny value.
	noop = sdk.Register0("bench.Noop", func(ctx context.Context) (int, error) { return 0, nil })

	// clientBatch is Ray's Client.small_value_batch for
	// multi_client_tasks_async: from inside a task, submit n no-op tasks
	// (nested submission, this worker owns them) and get them all.
	clientBatch = sdk.Register1("bench.ClientBatch", func(ctx context.Context, n int) (int, error) {
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = noop.Remote(ctx)
		}
		vals, err := sdk.GetAll(ctx, refs)
		if err != nil {
			return 0, err
		}
		if len(vals) != n {
			return 0, fmt.Errorf("got %d values for %d tasks", len(vals), n)
		}
		return n, nil
	})
)
