package tests

import (
	"context"
	"testing"

	"github.com/goray/goray/sdk"
)

// Benchmarks of the core paths on an embedded cluster; `make bench` runs
// the full microbenchmark (cmd/goray-bench).

var Noop = sdk.Register0("tests.Noop", func(ctx context.Context) (int, error) { return 0, nil })

func benchCluster(b *testing.B) context.Context {
	b.Helper()
	ctx := context.Background()
	if err := sdk.Init(ctx, sdk.SessionDir(b.TempDir()), sdk.ObjectStoreMemory(256<<20), sdk.LogToDriver(false)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sdk.Shutdown)
	// Warm up: workers started, function known to be short.
	refs := make([]sdk.Ref[int], 200)
	for i := range refs {
		refs[i] = Noop.Remote(ctx)
	}
	if _, err := sdk.GetAll(ctx, refs); err != nil {
		b.Fatal(err)
	}
	return ctx
}

func BenchmarkTasksSync(b *testing.B) {
	ctx := benchCluster(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Noop.Remote(ctx).Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkTasksAsync(b *testing.B) {
	ctx := benchCluster(b)
	b.ResetTimer()
	refs := make([]sdk.Ref[int], 0, 1000)
	for i := 0; i < b.N; i++ {
		refs = append(refs, Noop.Remote(ctx))
		if len(refs) == cap(refs) || i == b.N-1 {
			if _, err := sdk.GetAll(ctx, refs); err != nil {
				b.Fatal(err)
			}
			refs = refs[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkPutSmall(b *testing.B) {
	ctx := benchCluster(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := sdk.Put(ctx, i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

func BenchmarkGetSmall(b *testing.B) {
	ctx := benchCluster(b)
	ref, err := sdk.Put(ctx, 42)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ref.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}
