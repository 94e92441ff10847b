package serve

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcherFillsBatches: 64 concurrent callers make two full batches of
// 32, each run by one call, and each caller gets its own result.
func TestBatcherFillsBatches(t *testing.T) {
	var calls atomic.Int32
	var sizes sync.Map
	b := NewBatcher(32, time.Minute, func(ctx context.Context, xs []int) ([]int, error) {
		sizes.Store(calls.Add(1), len(xs))
		out := make([]int, len(xs))
		for i, x := range xs {
			out[i] = 2 * x
		}
		return out, nil
	})
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if v, err := b.Do(context.Background(), i); err != nil || v != 2*i {
				t.Errorf("Do(%d) = %d, %v", i, v, err)
			}
		})
	}
	wg.Wait()
	if calls.Load() != 2 {
		t.Fatalf("%d batch calls, want 2", calls.Load())
	}
	sizes.Range(func(_, n any) bool {
		if n.(int) != 32 {
			t.Errorf("a batch of %d, want 32", n)
		}
		return true
	})
}

// TestBatcherTimeoutAndErrors: a lone item goes after the timeout; the
// batch function's error, or a wrong number of results, reaches every
// caller.
func TestBatcherTimeoutAndErrors(t *testing.T) {
	b := NewBatcher(8, 10*time.Millisecond, func(ctx context.Context, xs []string) ([]string, error) { return xs, nil })
	if v, err := b.Do(context.Background(), "x"); err != nil || v != "x" {
		t.Fatalf("lone item: %q %v", v, err)
	}
	boom := errors.New("boom")
	bad := NewBatcher(2, time.Minute, func(ctx context.Context, xs []int) ([]int, error) { return nil, boom })
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := bad.Do(context.Background(), 1); !errors.Is(err, boom) {
				t.Errorf("batch error: %v", err)
			}
		})
	}
	wg.Wait()
	short := NewBatcher(1, time.Minute, func(ctx context.Context, xs []int) ([]int, error) { return nil, nil })
	if _, err := short.Do(context.Background(), 1); err == nil {
		t.Fatal("a batch function returning no results: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := NewBatcher(4, time.Minute, func(ctx context.Context, xs []int) ([]int, error) { return xs, nil })
	if _, err := slow.Do(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
}
